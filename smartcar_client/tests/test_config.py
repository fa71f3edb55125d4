import dataclasses

import pytest

from smartcar_client.config import SmartcarConfig
from smartcar_client.tests.conftest import CLIENT_SECRET


def _replace(config: SmartcarConfig, **changes) -> SmartcarConfig:
    return dataclasses.replace(config, **changes)


def test_repr_hides_client_secret(config: SmartcarConfig):
    assert CLIENT_SECRET not in repr(config)
    assert CLIENT_SECRET not in str(config)


def test_origins_lose_trailing_slash(config: SmartcarConfig):
    changed = _replace(config, api_origin="http://127.0.0.1:8000/_smartcar/")

    assert changed.api_origin == "http://127.0.0.1:8000/_smartcar"


@pytest.mark.parametrize(
    "origin", ["ftp://api.smartcar.test", "api.smartcar.test", "https://x.test/?a=1", "https://"]
)
def test_rejects_bad_origin(config: SmartcarConfig, origin: str):
    with pytest.raises(ValueError, match="origin"):
        _replace(config, auth_origin=origin)


def test_rejects_unknown_mode(config: SmartcarConfig):
    with pytest.raises(ValueError, match="mode"):
        _replace(config, mode="test")


def test_rejects_unknown_unit_system(config: SmartcarConfig):
    with pytest.raises(ValueError, match="unit_system"):
        _replace(config, unit_system="furlongs")


def test_rejects_non_positive_timeout(config: SmartcarConfig):
    with pytest.raises(ValueError, match="timeouts"):
        _replace(config, read_timeout=0)


def test_scopes_list_becomes_tuple_and_config_is_hashable(config: SmartcarConfig):
    changed = _replace(config, scopes=["read_vin", "read_battery"])

    assert changed.scopes == ("read_vin", "read_battery")
    assert hash(changed) == hash(_replace(config, scopes=("read_vin", "read_battery")))


def test_pool_maxsize_defaults_to_enough_for_the_pollers_workers(config: SmartcarConfig):
    assert config.pool_maxsize >= 32


@pytest.mark.parametrize("size", [0, -1])
def test_rejects_an_empty_pool(config: SmartcarConfig, size: int):
    with pytest.raises(ValueError, match="pool_maxsize"):
        _replace(config, pool_maxsize=size)
