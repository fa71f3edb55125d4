"""The telemetry app's HTTP API: the SPA's vehicles and telemetry (camelCase, under API_PREFIX)
and the first seed's `/v1/ev/me/…` endpoints (snake_case, at the root).

Views parse, call one selector or service, and serialize; no business logic lives here except
in `refresh` (the on-demand poll guard) and `cursors` (history cursor encoding).
"""
