"""Admin for Smartcar accounts and vehicles. Token fields never appear: not in lists, forms,
search or history (they are also `editable=False`, so no form can carry them)."""

from django.contrib import admin

from vehicles.models import SmartcarAccount, Vehicle


class VehicleInline(admin.TabularInline):
    model = Vehicle
    fields = ("smartcar_vehicle_id", "make", "model", "year", "status", "is_primary")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(SmartcarAccount)
class SmartcarAccountAdmin(admin.ModelAdmin):
    list_display = (
        "smartcar_user_id",
        "owner",
        "status",
        "access_expires_at",
        "refresh_expires_at",
        "last_refreshed_at",
        "updated_at",
    )
    list_filter = ("status",)
    list_select_related = ("owner",)
    search_fields = ("smartcar_user_id", "owner__username", "owner__email")
    fields = (
        "smartcar_user_id",
        "owner",
        "status",
        "scopes",
        "access_expires_at",
        "refresh_expires_at",
        "last_refreshed_at",
        "last_error",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    inlines = (VehicleInline,)

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(Vehicle)
class VehicleAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "owner",
        "make",
        "model",
        "year",
        "status",
        "is_primary",
        "connected_at",
    )
    list_filter = ("status", "make")
    list_select_related = ("owner",)
    search_fields = (
        "smartcar_vehicle_id",
        "vin",
        "owner__username",
        "owner__email",
        "account__smartcar_user_id",
    )
    raw_id_fields = ("owner", "account")
    readonly_fields = (
        "id",
        "smartcar_vehicle_id",
        "owner",
        "account",
        "make",
        "model",
        "year",
        "vin",
        "status",
        "connected_at",
        "disconnected_at",
        "created_at",
        "updated_at",
    )
    fields = (*readonly_fields[:8], "nickname", "is_primary", *readonly_fields[8:])

    def has_add_permission(self, request: object) -> bool:
        return False
