"""Send one signed Smartcar v4 webhook (VERIFY, VEHICLE_STATE or VEHICLE_ERROR) to a URL.

Needs SMARTCAR_MANAGEMENT_TOKEN (the signing key). Runs in its own process, so it cannot see the
emulator's in-memory grants: the user id is derived from seed + brand + account name exactly as the
consent page derives it. Prints status codes only, never the key or signature.
"""

from argparse import ArgumentParser
from typing import Any

import requests
from django.core.management.base import BaseCommand, CommandError

from smartcar_emulator import clock, conf, fleet, webhooks


class Command(BaseCommand):
    help = "Send a signed Smartcar webhook (v4 envelope) from the emulator."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--url", default="", help="Target URL (default: SMARTCAR_EMULATOR_WEBHOOK_URL)."
        )
        parser.add_argument(
            "--event",
            default="VEHICLE_STATE",
            type=str.upper,
            choices=webhooks.EVENT_TYPES,
            help="Event type.",
        )
        parser.add_argument("--vehicle", default="", help="Vehicle id or VIN (default: the first).")
        parser.add_argument(
            "--account", default="driver", help="OEM account name on the consent page."
        )
        parser.add_argument("--user", default="", help="Smartcar user id (overrides --account).")
        parser.add_argument("--seed", type=int, default=None, help="Fleet seed (default: setting).")
        parser.add_argument("--challenge", default="", help="VERIFY challenge (default: random).")
        parser.add_argument(
            "--error-code",
            default="ASLEEP",
            choices=sorted(webhooks.VEHICLE_ERRORS),
            help="VEHICLE_ERROR code.",
        )
        parser.add_argument(
            "--resolved", action="store_true", help="VEHICLE_ERROR in state RESOLVED."
        )
        parser.add_argument(
            "--first-delivery", action="store_true", help="VEHICLE_STATE FIRST_DELIVERY trigger."
        )
        parser.add_argument(
            "--duplicate", action="store_true", help="Deliver again as a retry (same eventId)."
        )
        parser.add_argument(
            "--bad-signature", action="store_true", help="Send a signature that does not match."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        key = conf.management_token()
        if not key:
            raise CommandError("SMARTCAR_MANAGEMENT_TOKEN is not set: cannot sign the webhook.")
        url = options["url"] or conf.webhook_url()
        if not url:
            raise CommandError("No target: pass --url or set SMARTCAR_EMULATOR_WEBHOOK_URL.")
        seed = conf.seed() if options["seed"] is None else options["seed"]
        vehicles = fleet.build_fleet(seed)
        wanted = options["vehicle"]
        vehicle = (
            next((v for v in vehicles if wanted in (v.id, v.vin)), None) if wanted else vehicles[0]
        )
        if vehicle is None:
            raise CommandError("Unknown vehicle: pass a simulated vehicle's id or VIN.")
        user_id = options["user"] or fleet.user_id_for(seed, vehicle.make, options["account"])
        now = clock.now()

        if options["event"] == "VERIFY":
            event = webhooks.verify_event(now=now, challenge=options["challenge"] or None)
        elif options["event"] == "VEHICLE_STATE":
            event = webhooks.vehicle_state_event(
                vehicle=vehicle, user_id=user_id, now=now, first_delivery=options["first_delivery"]
            )
        else:
            event = webhooks.vehicle_error_event(
                vehicle=vehicle,
                user_id=user_id,
                now=now,
                code=options["error_code"],
                resolved=options["resolved"],
            )

        deliveries = [event]
        if options["duplicate"]:
            deliveries.append(webhooks.redelivery(event, now=clock.now()))
        for number, delivery in enumerate(deliveries, start=1):
            body = webhooks.serialize(delivery)
            signature = webhooks.sign(body, key)
            if options["bad_signature"]:
                signature = webhooks.sign(body, key + "-wrong")
            try:
                response = webhooks.deliver(url, body, signature)
            except requests.RequestException as exc:
                raise CommandError(f"Delivery {number} failed: {type(exc).__name__}") from exc
            self.stdout.write(
                f"delivery {number}: {delivery['eventType']} eventId={delivery['eventId']} "
                f"-> HTTP {response.status_code}"
            )
