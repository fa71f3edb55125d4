"""The HTTP boundary to Smartcar: no ORM, no views, no Django import outside `factory.py`.

Import the client, its config, its values and its errors from here; build the project's client with
`smartcar_client.factory.client_from_settings()`.
"""

from smartcar_client.client import SmartcarClient
from smartcar_client.config import SmartcarConfig
from smartcar_client.errors import (
    SmartcarBillingError,
    SmartcarConfigurationError,
    SmartcarError,
    SmartcarInvalidGrantError,
    SmartcarMalformedResponseError,
    SmartcarNotCapableError,
    SmartcarReauthRequiredError,
    SmartcarRequestError,
    SmartcarRetryLaterError,
    SmartcarUserActionRequiredError,
    parse_error,
)
from smartcar_client.types import BatchItem, BatchResponse, TokenSet, VehicleAttributes

__all__ = [
    "BatchItem",
    "BatchResponse",
    "SmartcarBillingError",
    "SmartcarClient",
    "SmartcarConfig",
    "SmartcarConfigurationError",
    "SmartcarError",
    "SmartcarInvalidGrantError",
    "SmartcarMalformedResponseError",
    "SmartcarNotCapableError",
    "SmartcarReauthRequiredError",
    "SmartcarRequestError",
    "SmartcarRetryLaterError",
    "SmartcarUserActionRequiredError",
    "TokenSet",
    "VehicleAttributes",
    "parse_error",
]
