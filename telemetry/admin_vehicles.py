"""The Vehicle admin: "my car stopped updating", "it says reconnect", "I linked the wrong car".

It lives in telemetry, not in `vehicles/admin.py`, because its list and page show telemetry and
the dependency arrows run telemetry → vehicles only. Connect attempts are reached through the
reverse relations, so nothing from oauth_smartcar is imported either.

Must never: show a token (the account's token columns are deferred and on no form), run a query
per changelist row (everything comes through `list_select_related`), or let anyone but a
superuser change a vehicle or disconnect it. "Poll now" needs `vehicles.poll_vehicle`.
"""

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from core.errors import ApplicationError
from telemetry.admin_charts import soc_chart_svg
from telemetry.admin_display import (
    describe_poll,
    latest_reading,
    map_link,
    masked_vin,
    telemetry_state,
)
from telemetry.admin_filters import ChargingStateFilter, StaleFilter
from telemetry.models import Reading, TelemetryState
from telemetry.schedule import calls_in_month_of
from telemetry.services.readings import telemetry_poll_vehicle
from vehicles.admin_roles import SuperuserWritesAdmin, can_poll, is_superuser
from vehicles.models import Vehicle
from vehicles.services import vehicle_disconnect, vehicle_update

CHART_DAYS = 7
# The chart draws at most ~660 points; this bounds what one page load reads from the table.
CHART_MAX_ROWS = 5000
RECENT_READINGS = 20
RECENT_ATTEMPTS = 20
OK_OUTCOMES = {TelemetryState.Outcome.OK, TelemetryState.Outcome.UNCHANGED}


class VehicleForm(forms.ModelForm):
    class Meta:
        model = Vehicle
        fields = ("nickname", "is_primary")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("is_primary") and self.instance.status == Vehicle.Status.DISCONNECTED:
            raise forms.ValidationError("A disconnected vehicle cannot be the primary one.")
        return cleaned


@admin.register(Vehicle)
class VehicleAdmin(SuperuserWritesAdmin):
    form = VehicleForm
    list_display = (
        "__str__",
        "owner_email",
        "owner_id_display",
        "make",
        "model",
        "year",
        "vin_masked",
        "status",
        "is_primary",
        "last_reading_at",
        "soc",
        "charging_state",
        "next_poll_at",
        "calls_this_month",
    )
    list_filter = ("status", "make", ChargingStateFilter, StaleFilter)
    list_select_related = ("owner", "telemetry_state", "telemetry_state__latest_reading")
    search_fields = (
        "owner__email",
        "owner__id__exact",
        "vin",
        "smartcar_vehicle_id",
        "account__smartcar_user_id",
    )
    ordering = ("-created_at",)
    list_per_page = 50
    fieldsets = (
        (
            "Vehicle",
            {
                "fields": (
                    "id",
                    "smartcar_vehicle_id",
                    "owner_display",
                    "account_display",
                    ("make", "model", "year"),
                    "vin_masked",
                    "nickname",
                    "is_primary",
                    "status",
                    ("connected_at", "disconnected_at"),
                )
            },
        ),
        (
            "Latest reading",
            {
                "fields": (
                    "last_reading_at",
                    "last_received_at",
                    "soc",
                    "range_km",
                    "charging_state",
                    "plugged_in",
                    "last_position",
                    "odometer_km",
                    "field_errors",
                )
            },
        ),
        (
            "Polling and errors",
            {
                "fields": (
                    "next_poll_at",
                    "last_polled_at",
                    "last_outcome",
                    "last_error",
                    "consecutive_failures",
                    "calls_this_month",
                    "account_status",
                )
            },
        ),
    )
    # Everything shown is read-only but the two fields a superuser may edit.
    readonly_fields = tuple(
        name for name in flatten_fieldsets(fieldsets) if name not in ("nickname", "is_primary")
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Vehicle]:
        # The change page needs the same joins; the account's tokens are never loaded.
        return (
            super()
            .get_queryset(request)
            .select_related(*self.list_select_related, "account")
            .defer("account__access_token", "account__refresh_token")
        )

    def save_model(self, request: HttpRequest, obj: Vehicle, form: Any, change: bool) -> None:
        # The service owns the one-primary-per-owner rule; the form only collected the values.
        vehicle_update(
            vehicle=obj,
            nickname=form.cleaned_data["nickname"],
            is_primary=form.cleaned_data["is_primary"],
        )

    # Columns and fields --------------------------------------------------------------------------

    @admin.display(description="Owner email", ordering="owner__email")
    def owner_email(self, vehicle: Vehicle) -> str:
        return vehicle.owner.email

    @admin.display(description="Owner id", ordering="owner_id")
    def owner_id_display(self, vehicle: Vehicle) -> int:
        return vehicle.owner_id

    @admin.display(description="Owner")
    def owner_display(self, vehicle: Vehicle) -> str:
        return f"{vehicle.owner.email or vehicle.owner.get_username()} (user id {vehicle.owner_id})"

    @admin.display(description="Smartcar account")
    def account_display(self, vehicle: Vehicle) -> str:
        account = vehicle.account
        if account is None:
            return "-"
        url = reverse("admin:vehicles_smartcaraccount_change", args=[account.pk])
        return format_html('<a href="{}">{}</a>', url, account.smartcar_user_id)

    @admin.display(description="Account status")
    def account_status(self, vehicle: Vehicle) -> str:
        account = vehicle.account
        if account is None:
            return "-"
        status = account.get_status_display()
        return f"{status}; last error: {account.last_error}" if account.last_error else status

    @admin.display(description="VIN")
    def vin_masked(self, vehicle: Vehicle) -> str:
        return masked_vin(vehicle.vin)

    @admin.display(
        description="Last reading", ordering="telemetry_state__latest_reading__recorded_at"
    )
    def last_reading_at(self, vehicle: Vehicle) -> Any:
        reading = latest_reading(vehicle)
        return reading.recorded_at if reading else None

    @admin.display(description="Received at")
    def last_received_at(self, vehicle: Vehicle) -> Any:
        reading = latest_reading(vehicle)
        return reading.received_at if reading else None

    @admin.display(description="SoC %", ordering="telemetry_state__latest_reading__soc_pct")
    def soc(self, vehicle: Vehicle) -> str:
        reading = latest_reading(vehicle)
        return "-" if reading is None or reading.soc_pct is None else f"{reading.soc_pct:.0f}"

    @admin.display(description="Range km")
    def range_km(self, vehicle: Vehicle) -> str:
        reading = latest_reading(vehicle)
        return "-" if reading is None or reading.range_km is None else f"{reading.range_km:.0f}"

    @admin.display(description="Charging")
    def charging_state(self, vehicle: Vehicle) -> str:
        reading = latest_reading(vehicle)
        if reading is None or not reading.charging_state:
            return "-"
        return str(reading.get_charging_state_display())

    @admin.display(description="Plugged in", boolean=True)
    def plugged_in(self, vehicle: Vehicle) -> bool | None:
        reading = latest_reading(vehicle)
        return reading.is_plugged_in if reading else None

    @admin.display(description="Last position")
    def last_position(self, vehicle: Vehicle) -> str:
        reading = latest_reading(vehicle)
        return map_link(reading.latitude, reading.longitude) if reading else "-"

    @admin.display(description="Odometer km")
    def odometer_km(self, vehicle: Vehicle) -> str:
        reading = latest_reading(vehicle)
        if reading is None or reading.odometer_km is None:
            return "-"
        return f"{reading.odometer_km:.0f}"

    @admin.display(description="Missing fields")
    def field_errors(self, vehicle: Vehicle) -> str:
        reading = latest_reading(vehicle)
        if reading is None or not reading.field_errors:
            return "-"
        return ", ".join(f"{k}: {v}" for k, v in sorted(reading.field_errors.items()))

    @admin.display(description="Next poll", ordering="telemetry_state__next_poll_at")
    def next_poll_at(self, vehicle: Vehicle) -> Any:
        state = telemetry_state(vehicle)
        return state.next_poll_at if state else None

    @admin.display(description="Last polled")
    def last_polled_at(self, vehicle: Vehicle) -> Any:
        state = telemetry_state(vehicle)
        return state.last_polled_at if state else None

    @admin.display(description="Last outcome")
    def last_outcome(self, vehicle: Vehicle) -> str:
        state = telemetry_state(vehicle)
        return str(state.get_last_outcome_display()) if state and state.last_outcome else "-"

    @admin.display(description="Last poll error")
    def last_error(self, vehicle: Vehicle) -> str:
        state = telemetry_state(vehicle)
        return state.last_error if state and state.last_error else "-"

    @admin.display(description="Failures in a row")
    def consecutive_failures(self, vehicle: Vehicle) -> int:
        state = telemetry_state(vehicle)
        return state.consecutive_failures if state else 0

    @admin.display(description="Calls this month")
    def calls_this_month(self, vehicle: Vehicle) -> int:
        state = telemetry_state(vehicle)
        if state is None:
            return 0
        return calls_in_month_of(
            timezone.now(), calls_month=state.calls_month, calls=state.calls_this_month
        )

    # Change page: history panels and actions --------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        vehicle = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if vehicle is not None:
            context.update(self.panels(request, vehicle))
        return super().change_view(request, object_id, form_url, extra_context=context)

    def panels(self, request: HttpRequest, vehicle: Vehicle) -> dict[str, Any]:
        end = timezone.now()
        start = end - timedelta(days=CHART_DAYS)
        chart_rows = [
            (recorded_at, soc)
            for recorded_at, soc in Reading.objects.filter(
                vehicle=vehicle, recorded_at__gte=start, recorded_at__lte=end, soc_pct__isnull=False
            )
            .order_by("-recorded_at")
            .values_list("recorded_at", "soc_pct")[:CHART_MAX_ROWS]
            if soc is not None
        ]
        # Attempts that linked this vehicle, plus the owner's attempts that linked nothing:
        # the denials and failures that explain "I could not connect my car".
        attempts = (
            vehicle.owner.connect_attempts.filter(Q(vehicles=vehicle) | Q(vehicles=None))
            .order_by("-created_at")
            .only(
                "id",
                "created_at",
                "channel",
                "outcome",
                "error_code",
                "error_description",
                "smartcar_request_id",
            )[:RECENT_ATTEMPTS]
        )
        return {
            "soc_chart": soc_chart_svg(chart_rows, start=start, end=end),
            "chart_days": CHART_DAYS,
            "recent_readings": vehicle.readings.order_by("-recorded_at")[:RECENT_READINGS],
            "connect_attempts": attempts,
            "readings_url": reverse("admin:telemetry_reading_changelist")
            + f"?vehicle={vehicle.pk}",
            "can_poll": can_poll(request) and vehicle.status != Vehicle.Status.DISCONNECTED,
            "can_disconnect": is_superuser(request)
            and vehicle.status != Vehicle.Status.DISCONNECTED,
        }

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<path:object_id>/poll/",
                self.admin_site.admin_view(self.poll_view),
                name="vehicles_vehicle_poll",
            ),
            path(
                "<path:object_id>/disconnect/",
                self.admin_site.admin_view(self.disconnect_view),
                name="vehicles_vehicle_disconnect",
            ),
        ]
        return own + super().get_urls()

    def _vehicle_or_404(self, request: HttpRequest, object_id: str) -> Vehicle:
        vehicle = self.get_object(request, object_id)
        if vehicle is None or not self.has_view_permission(request, vehicle):
            raise Http404("No such vehicle")
        return vehicle

    def _change_url(self, vehicle: Vehicle) -> str:
        return reverse("admin:vehicles_vehicle_change", args=[vehicle.pk])

    def poll_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: read the vehicle from Smartcar now, as an on-demand refresh, and say how it went."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not can_poll(request):
            raise PermissionDenied
        vehicle = self._vehicle_or_404(request, object_id)
        if vehicle.status == Vehicle.Status.DISCONNECTED:
            self.message_user(request, "A disconnected vehicle is not polled.", messages.WARNING)
            return HttpResponseRedirect(self._change_url(vehicle))
        result = telemetry_poll_vehicle(vehicle=vehicle, source=Reading.Source.REFRESH)
        text = describe_poll(result)
        self.log_change(request, vehicle, text)
        level = messages.SUCCESS if result.outcome in OK_OUTCOMES else messages.WARNING
        self.message_user(request, text, level)
        return HttpResponseRedirect(self._change_url(vehicle))

    def disconnect_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: a confirmation page. POST: revoke at Smartcar and mark the vehicle disconnected."""
        if not is_superuser(request):
            raise PermissionDenied
        vehicle = self._vehicle_or_404(request, object_id)
        if vehicle.status == Vehicle.Status.DISCONNECTED:
            self.message_user(request, "This vehicle is already disconnected.", messages.INFO)
            return HttpResponseRedirect(self._change_url(vehicle))
        if request.method == "POST":
            try:
                vehicle_disconnect(vehicle=vehicle)
            except ApplicationError as exc:
                # Smartcar refused or was down: nothing changed here; the message is ours.
                self.message_user(request, f"Not disconnected: {exc.message}", messages.ERROR)
                return HttpResponseRedirect(self._change_url(vehicle))
            self.log_change(request, vehicle, "Disconnected from the admin")
            self.message_user(request, f"{vehicle} is disconnected.", messages.SUCCESS)
            return HttpResponseRedirect(self._change_url(vehicle))
        context = {
            **self.admin_site.each_context(request),
            "title": "Disconnect this vehicle?",
            "opts": self.opts,
            "object": vehicle,
            "owner": self.owner_display(vehicle),
            "vin": masked_vin(vehicle.vin),
            "change_url": self._change_url(vehicle),
        }
        return TemplateResponse(
            request, "admin/vehicles/vehicle/disconnect_confirmation.html", context
        )
