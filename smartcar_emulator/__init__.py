"""A local stand-in for Smartcar (Connect, OAuth token endpoint, vehicle API v2.0 and v3, webhooks).

It plays the *other side of the wire* for development and tests, so it must never import anything
from the rest of the project (core, vehicles, oauth_smartcar, telemetry, smartcar_client, config):
only Django, the standard library and `requests`. State lives in memory (`store`), is lost on
restart and is resettable. It is mounted only when SMARTCAR_EMULATOR is on (DEBUG runs, tests).
"""
