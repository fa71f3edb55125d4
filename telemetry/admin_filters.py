"""Changelist filters for the support admin that stay cheap at 10,000 vehicles: none of them
lists rows from a large table (the vehicle filter offers only the vehicle already chosen)."""

import uuid
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from telemetry.models import Reading
from vehicles.models import Vehicle

STALE_AFTER = timedelta(hours=24)


class ChargingStateFilter(admin.SimpleListFilter):
    title = "charging state"
    parameter_name = "charging"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [*Reading.ChargingState.choices, ("none", "Unknown")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        field = "telemetry_state__latest_reading__charging_state"
        value = self.value()
        if value == "none":
            return queryset.filter(**{f"{field}__isnull": True})
        if value in Reading.ChargingState.values:
            return queryset.filter(**{field: value})
        return queryset


class StaleFilter(admin.SimpleListFilter):
    """No reading (by vehicle time) in the last 24 hours: "my car stopped updating"."""

    title = "last reading"
    parameter_name = "stale"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Stale (none in 24 h)"), ("no", "Fresh (within 24 h)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        recent = Q(telemetry_state__latest_reading__recorded_at__gte=timezone.now() - STALE_AFTER)
        if self.value() == "yes":
            return queryset.exclude(recent)
        if self.value() == "no":
            return queryset.filter(recent)
        return queryset


class VehicleIdFilter(admin.SimpleListFilter):
    """Filter by one vehicle, given as `?vehicle=<uuid>` (the vehicle page links to it).

    A dropdown of every vehicle would load them all; this offers only the chosen one, so the
    sidebar shows it and "All" to clear it.
    """

    title = "vehicle"
    parameter_name = "vehicle"

    def vehicle_id(self) -> uuid.UUID | None:
        value = self.value()
        if not value:
            return None
        try:
            return uuid.UUID(value)
        except ValueError as exc:
            raise IncorrectLookupParameters("vehicle must be a vehicle id") from exc

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        vehicle_id = self.vehicle_id()
        if vehicle_id is None:
            return []
        vehicle = Vehicle.objects.filter(pk=vehicle_id).first()
        return [(str(vehicle_id), str(vehicle) if vehicle else str(vehicle_id))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        vehicle_id = self.vehicle_id()
        return queryset if vehicle_id is None else queryset.filter(vehicle_id=vehicle_id)
