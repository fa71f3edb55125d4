"""Canned Smartcar answers for the Connect flow, registered on a `responses` mock."""

import json

import responses

AUTH = "https://auth.smartcar.test"
API = "https://api.smartcar.test/v2.0"
TOKEN_URL = f"{AUTH}/oauth/token"

ACCESS_TOKEN = "access-PLAIN-0123456789"
REFRESH_TOKEN = "refresh-PLAIN-0123456789"

VEHICLES = {
    "vid-1": {"make": "TESLA", "model": "Model 3", "year": 2021, "vin": "5YJ3E1EA7KF000001"},
    "vid-2": {
        "make": "FORD",
        "model": "Mustang Mach-E",
        "year": "2022",
        "vin": "3FMTK3SU0MMA00002",
    },
}


def token_ok(
    mock: responses.RequestsMock, *, access: str = ACCESS_TOKEN, refresh: str = REFRESH_TOKEN
):
    return mock.post(
        TOKEN_URL,
        json={
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 7200,
            "refresh_token": refresh,
        },
    )


def token_error(mock: responses.RequestsMock, error: str, status: int = 400, description: str = ""):
    return mock.post(
        TOKEN_URL,
        json={"error": error, "error_description": description or f"{error} happened"},
        status=status,
    )


def _batch_callback(vehicles: dict):
    def callback(request):
        vehicle_id = request.url.split("/vehicles/")[1].split("/")[0]
        info = vehicles[vehicle_id]
        answers = []
        for item in json.loads(request.body)["requests"]:
            path = item["path"]
            if path == "/":
                body = {
                    "id": vehicle_id,
                    "make": info["make"],
                    "model": info["model"],
                    "year": info["year"],
                }
                answers.append({"path": path, "code": 200, "body": body, "headers": {}})
            elif path == "/vin":
                answers.append({"path": path, "code": 200, "body": {"vin": info["vin"]}})
            elif path == "/permissions":
                body = {
                    "permissions": ["read_vehicle_info", "read_vin"],
                    "paging": {"count": 2, "offset": 0},
                }
                answers.append({"path": path, "code": 200, "body": body})
        return 200, {"sc-request-id": "req-batch"}, json.dumps({"responses": answers})

    return callback


def discovery_ok(
    mock: responses.RequestsMock, *, user_id: str = "sc-user-1", vehicles: dict | None = None
):
    vehicles = VEHICLES if vehicles is None else vehicles
    mock.get(f"{API}/user", json={"id": user_id})
    mock.get(
        f"{API}/vehicles",
        json={"vehicles": list(vehicles), "paging": {"count": len(vehicles), "offset": 0}},
    )
    for vehicle_id in vehicles:
        mock.add_callback(
            responses.POST,
            f"{API}/vehicles/{vehicle_id}/batch",
            callback=_batch_callback(vehicles),
            content_type="application/json",
        )


def link_ok(mock: responses.RequestsMock, **kwargs):
    token_ok(mock)
    discovery_ok(mock, **kwargs)


def token_calls(mock: responses.RequestsMock) -> int:
    return sum(1 for call in mock.calls if call.request.url.startswith(TOKEN_URL))
