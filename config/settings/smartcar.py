"""Smartcar settings: credentials, origins, timeouts, and the local emulator fallback.

Origins are origins only (scheme, host, optional port); the client appends the paths. With DEBUG on
and no SMARTCAR_CLIENT_ID, the built-in emulator (mounted at /_smartcar/) stands in for Smartcar so
that `make run` works on a fresh machine. Production never gets the emulator.
"""

from django.core.exceptions import ImproperlyConfigured

from config.env import env

_DEBUG = env.bool("DEBUG", default=False)
_LOCAL_ORIGIN = env.str("LOCAL_ORIGIN", default="http://127.0.0.1:8000").rstrip("/")

SMARTCAR_CLIENT_ID = env.str("SMARTCAR_CLIENT_ID", default="")
SMARTCAR_EMULATOR = _DEBUG and env.bool("SMARTCAR_EMULATOR", default=not SMARTCAR_CLIENT_ID)
SMARTCAR_EMULATOR_PATH = "_smartcar"
_EMULATOR_ORIGIN = f"{_LOCAL_ORIGIN}/{SMARTCAR_EMULATOR_PATH}"

if SMARTCAR_EMULATOR and not SMARTCAR_CLIENT_ID:
    # Public, made-up credentials that only the emulator accepts.
    SMARTCAR_CLIENT_ID = "emulator-client-id"
    SMARTCAR_CLIENT_SECRET = env.str("SMARTCAR_CLIENT_SECRET", default="emulator-client-secret")
else:
    SMARTCAR_CLIENT_SECRET = env.str("SMARTCAR_CLIENT_SECRET", default="")


def _origin(name: str, real: str) -> str:
    return env.str(name, default=_EMULATOR_ORIGIN if SMARTCAR_EMULATOR else real).rstrip("/")


SMARTCAR_BASE_URL = _origin("SMARTCAR_BASE_URL", "https://api.smartcar.com")
SMARTCAR_AUTH_URL = _origin("SMARTCAR_AUTH_URL", "https://auth.smartcar.com")
SMARTCAR_CONNECT_URL = _origin("SMARTCAR_CONNECT_URL", "https://connect.smartcar.com")
SMARTCAR_V3_BASE_URL = _origin("SMARTCAR_V3_BASE_URL", "https://vehicle.api.smartcar.com")

SMARTCAR_REDIRECT_URI = env.str(
    "SMARTCAR_REDIRECT_URI",
    default=f"{_LOCAL_ORIGIN}{'/' + env.str('API_PREFIX', default='/api/v1').strip('/')}"
    "/smartcar/redirect"
    if _DEBUG
    else "",
)

# "test" is Smartcar's old name for simulated vehicles; we accept it and send "simulated".
_MODE = env.str("SMARTCAR_MODE", default="simulated" if SMARTCAR_EMULATOR else "live").lower()
SMARTCAR_MODE = {"test": "simulated"}.get(_MODE, _MODE)

SMARTCAR_SCOPES = env.str(
    "SMARTCAR_SCOPES",
    default="read_vehicle_info read_vin read_battery read_charge read_location read_odometer",
).split()

SMARTCAR_CONNECT_TIMEOUT = env.float("SMARTCAR_CONNECT_TIMEOUT", default=5.0)
# HTTP connections kept per Smartcar host; at least the poller's --workers, or requests queue.
SMARTCAR_HTTP_POOL_MAXSIZE = env.int("SMARTCAR_HTTP_POOL_MAXSIZE", default=32)
SMARTCAR_READ_TIMEOUT = env.float("SMARTCAR_READ_TIMEOUT", default=30.0)
SMARTCAR_UNIT_SYSTEM = env.str("SMARTCAR_UNIT_SYSTEM", default="metric")
# Sent on every Smartcar request (their token endpoint requires one); empty: the client's own.
SMARTCAR_USER_AGENT = env.str("SMARTCAR_USER_AGENT", default="")

SMARTCAR_SIMPLE_OAUTH_REDIRECT = env.bool("SMARTCAR_SIMPLE_OAUTH_REDIRECT", default=True)

# How long a Connect attempt (and its `state`) stays usable: Smartcar's codes live 10 minutes.
SMARTCAR_CONNECT_TTL_SECONDS = env.int("SMARTCAR_CONNECT_TTL_SECONDS", default=600)

SMARTCAR_MANAGEMENT_TOKEN = env.str("SMARTCAR_MANAGEMENT_TOKEN", default="")
SMARTCAR_MANAGEMENT_TOKEN_PREVIOUS = env.str("SMARTCAR_MANAGEMENT_TOKEN_PREVIOUS", default="")

# When a stored webhook event is processed (telemetry/services/webhook_dispatch.py):
# "background" answers Smartcar once the event is committed and processes it in a thread of the
# same process; "inline" processes it before answering; "worker" only stores it, for
# `manage.py process_webhooks --follow` to process in a process of its own.
SMARTCAR_WEBHOOK_PROCESSING = env.str("SMARTCAR_WEBHOOK_PROCESSING", default="background").lower()
if SMARTCAR_WEBHOOK_PROCESSING not in ("background", "inline", "worker"):
    raise ImproperlyConfigured(
        "SMARTCAR_WEBHOOK_PROCESSING must be 'background', 'inline' or 'worker'."
    )
# Events waiting for the background thread, per process; more are left to the retry sweep.
SMARTCAR_WEBHOOK_QUEUE_SIZE = env.int("SMARTCAR_WEBHOOK_QUEUE_SIZE", default=1000)
if SMARTCAR_WEBHOOK_QUEUE_SIZE < 1:
    raise ImproperlyConfigured("SMARTCAR_WEBHOOK_QUEUE_SIZE must be at least 1.")
# At a normal exit, how long the background thread may take to finish its queue.
SMARTCAR_WEBHOOK_DRAIN_SECONDS = env.float("SMARTCAR_WEBHOOK_DRAIN_SECONDS", default=5.0)
if SMARTCAR_WEBHOOK_DRAIN_SECONDS < 0:
    raise ImproperlyConfigured("SMARTCAR_WEBHOOK_DRAIN_SECONDS must not be negative.")

# Which Smartcar vehicle API the poller reads: "v3" (signals; the default, since v2.0 is being
# retired) or "v2" (one POST /batch per vehicle).
SMARTCAR_VEHICLE_API = env.str("SMARTCAR_VEHICLE_API", default="v3").lower()

# Refresh an access token that expires within this many seconds.
SMARTCAR_TOKEN_REFRESH_MARGIN_SECONDS = env.int(
    "SMARTCAR_TOKEN_REFRESH_MARGIN_SECONDS", default=300
)
# Refresh tokens die after 60 days unused; the poller refreshes idle grants older than this.
SMARTCAR_IDLE_REFRESH_DAYS = env.int("SMARTCAR_IDLE_REFRESH_DAYS", default=50)
# How long a worker may hold an account's refresh lease before others may take over.
SMARTCAR_REFRESH_LEASE_SECONDS = env.int("SMARTCAR_REFRESH_LEASE_SECONDS", default=60)
# Calls per vehicle per calendar month that Smartcar's plan allows (unset: no budget).
SMARTCAR_MONTHLY_CALL_BUDGET = env.int("SMARTCAR_MONTHLY_CALL_BUDGET", default=0) or None
