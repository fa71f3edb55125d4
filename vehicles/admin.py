"""Admin for Smartcar accounts: "it says reconnect" is answered here.

Owns the SmartcarAccount admin only. The Vehicle admin is in `telemetry/admin.py`, because its
list and page show telemetry and this app must never import telemetry.

Must never show a token, plaintext or ciphertext: the token columns are deferred (never even
decrypted for a page), named in no `fields`, `list_display` or `search_fields`, and are
`editable=False`, so no form, change message or history entry can carry them.
"""

from typing import Any

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from vehicles.admin_roles import ReadOnlyAdmin
from vehicles.models import SmartcarAccount, Vehicle

TOKEN_FIELDS = ("access_token", "refresh_token")


class VehicleInline(admin.TabularInline):
    model = Vehicle
    fields = ("smartcar_vehicle_id", "make", "model", "year", "status", "is_primary")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-connected_at",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SmartcarAccount)
class SmartcarAccountAdmin(ReadOnlyAdmin):
    list_display = (
        "smartcar_user_id",
        "owner_email",
        "owner_id_display",
        "status",
        "vehicle_count",
        "access_expires_at",
        "refresh_expires_at",
        "last_refreshed_at",
        "last_error",
    )
    list_filter = ("status",)
    list_select_related = ("owner",)
    # "=…__exact" on the integer id: Django compares it as text, so any search term is safe.
    search_fields = ("smartcar_user_id", "owner__email", "owner__username", "owner__id__exact")
    ordering = ("-created_at",)
    fields = (
        "smartcar_user_id",
        "owner",
        "owner_email",
        "status",
        "vehicle_count",
        "scopes",
        "access_expires_at",
        "refresh_expires_at",
        "last_refreshed_at",
        "refresh_lease_until",
        "last_error",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    inlines = (VehicleInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[SmartcarAccount]:
        return (
            super()
            .get_queryset(request)
            .defer(*TOKEN_FIELDS)
            .annotate(
                live_vehicles=Count(
                    "vehicles", filter=~Q(vehicles__status=Vehicle.Status.DISCONNECTED)
                )
            )
        )

    @admin.display(description="Owner email", ordering="owner__email")
    def owner_email(self, account: SmartcarAccount) -> str:
        return account.owner.email

    @admin.display(description="Owner id", ordering="owner_id")
    def owner_id_display(self, account: SmartcarAccount) -> int:
        return account.owner_id

    @admin.display(description="Vehicles (live)", ordering="live_vehicles")
    def vehicle_count(self, account: SmartcarAccount) -> int:
        return getattr(account, "live_vehicles", 0)
