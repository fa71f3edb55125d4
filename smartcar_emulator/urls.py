"""The emulator's URLs, relative to its mount point (the project mounts them at `_smartcar/`).

One root stands for every Smartcar origin: Connect (`oauth/authorize`), auth (`oauth/token`),
API v2.0 (`v2.0/…`) and vehicle API v3 (`v3/…`), plus `_control/…` for tests.
"""

from django.urls import path, re_path

from smartcar_emulator.views import common, connect, control, token, v2, v3

app_name = "smartcar_emulator"

_VID = "<str:vehicle_id>"

urlpatterns = [
    path("oauth/authorize", connect.authorize, name="authorize"),
    path("oauth/consent", connect.consent, name="consent"),
    path("oauth/token", token.token, name="token"),
    # Vehicle API v2.0
    path("v2.0/user", v2.user, name="v2-user"),
    path("v2.0/vehicles", v2.vehicles, name="v2-vehicles"),
    path(f"v2.0/vehicles/{_VID}", v2.vehicle_read, name="v2-vehicle"),
    path(f"v2.0/vehicles/{_VID}/permissions", v2.permissions, name="v2-permissions"),
    path(f"v2.0/vehicles/{_VID}/batch", v2.batch, name="v2-batch"),
    path(f"v2.0/vehicles/{_VID}/application", v2.application, name="v2-application"),
    re_path(
        r"^v2\.0/vehicles/(?P<vehicle_id>[^/]+)/(?P<path>battery(?:/capacity)?|charge(?:/limit)?"
        r"|location|odometer|vin)$",
        v2.vehicle_read,
        name="v2-vehicle-read",
    ),
    re_path(r"^v2\.0/", common.not_found),
    # Vehicle API v3
    path("v3/vehicles", v3.vehicles, name="v3-vehicles"),
    path(f"v3/vehicles/{_VID}", v3.vehicle, name="v3-vehicle"),
    path(f"v3/vehicles/{_VID}/signals", v3.signal_list, name="v3-signals"),
    path(f"v3/vehicles/{_VID}/signals/<str:code>", v3.signal_one, name="v3-signal"),
    re_path(r"^v3/", common.v3_not_found),
    # Control (tests, benchmarks, demos)
    path("_control/reset", control.reset, name="control-reset"),
    path("_control/faults", control.faults, name="control-faults"),
    path("_control/grants", control.grants, name="control-grants"),
    path("_control/calls", control.calls, name="control-calls"),
    path("_control/vehicles", control.vehicles, name="control-vehicles"),
    path("_control/clock", control.clock, name="control-clock"),
    re_path(r"^v[^/]*/", common.not_found),
]
