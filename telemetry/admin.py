"""Admin for support staff: telemetry readings, the app throttle and webhook events (read-only;
superusers may reprocess webhook events). The Vehicle admin is in `telemetry.admin_vehicles`,
registered from here.

Must never: let anyone change or delete telemetry history through the admin, or reprocess an
unbounded selection inside one request.
"""

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from telemetry import admin_vehicles  # noqa: F401 - registers the Vehicle admin
from telemetry.admin_display import map_link
from telemetry.admin_filters import VehicleIdFilter
from telemetry.models import AppThrottle, Reading, WebhookEvent
from telemetry.services.webhooks import webhook_event_process
from vehicles.admin_roles import ReadOnlyAdmin, is_superuser

# Reprocessing runs in the request: a bounded batch keeps the page from timing out.
REPROCESS_MAX = 100


@admin.register(Reading)
class ReadingAdmin(ReadOnlyAdmin):
    list_display = (
        "recorded_at",
        "vehicle",
        "source",
        "soc_pct",
        "range_km",
        "charging_state",
        "is_plugged_in",
        "odometer_km",
        "received_at",
    )
    list_filter = ("source", "charging_state", VehicleIdFilter)
    list_select_related = ("vehicle",)
    date_hierarchy = "recorded_at"
    # Served by the (recorded_at) index, and by (vehicle, -recorded_at) once filtered by vehicle.
    ordering = ("-recorded_at",)
    list_per_page = 100
    fields = (
        "id",
        "vehicle",
        "recorded_at",
        "received_at",
        "source",
        "soc_pct",
        "range_km",
        "charging_state",
        "is_plugged_in",
        "position",
        "odometer_km",
        "field_errors",
    )
    readonly_fields = fields

    @admin.display(description="Position")
    def position(self, reading: Reading) -> str:
        return map_link(reading.latitude, reading.longitude)


@admin.register(AppThrottle)
class AppThrottleAdmin(ReadOnlyAdmin):
    """Why nobody's car updates: Smartcar's app-wide rate limit, as the pollers share it."""

    list_display = ("id", "paused_until", "reason", "updated_at")


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
        "event_type",
        "status",
        "vehicle",
        "smartcar_vehicle_id",
        "attempts",
        "error",
        "processed_at",
    )
    list_filter = ("status", "event_type", VehicleIdFilter)
    list_select_related = ("vehicle",)
    # Exact matches only: the event id is unique (indexed); a substring search would scan.
    search_fields = ("event_id__exact", "smartcar_vehicle_id__exact")
    date_hierarchy = "received_at"
    ordering = ("-received_at",)
    list_per_page = 100
    actions = ("reprocess",)
    fields = (
        "id",
        "event_id",
        "delivery_id",
        "event_type",
        "status",
        "error",
        "attempts",
        "vehicle",
        "smartcar_vehicle_id",
        "received_at",
        "processed_at",
        "lease_owner",
        "lease_until",
        "payload_pretty",
    )
    readonly_fields = fields

    @admin.display(description="Payload")
    def payload_pretty(self, event: WebhookEvent) -> str:
        text = json.dumps(event.payload, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return is_superuser(request)

    @admin.action(description="Reprocess selected webhook events", permissions=["reprocess"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        events = list(queryset.order_by("received_at")[: REPROCESS_MAX + 1])
        if len(events) > REPROCESS_MAX:
            self.message_user(
                request,
                f"Select at most {REPROCESS_MAX} events at a time "
                "(or run manage.py process_webhooks --retry-failed).",
                messages.ERROR,
            )
            return
        outcomes: dict[str, int] = {}
        for event in events:
            status = webhook_event_process(event=event, force=True)
            self.log_change(request, event, f"Reprocessed from the admin: {status}")
            outcomes[status] = outcomes.get(status, 0) + 1
        summary = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items()))
        failed = outcomes.get(WebhookEvent.Status.FAILED, 0)
        self.message_user(
            request,
            f"Reprocessed {len(events)} event(s): {summary}.",
            messages.WARNING if failed else messages.SUCCESS,
        )
