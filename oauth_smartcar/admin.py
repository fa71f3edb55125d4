"""Read-only admin for Connect attempts: "why did my car not link?" in one search."""

from django.contrib import admin

from oauth_smartcar.models import ConnectAttempt


@admin.register(ConnectAttempt)
class ConnectAttemptAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "user",
        "channel",
        "outcome",
        "error_code",
        "smartcar_user_id",
        "completed_at",
    )
    list_filter = ("outcome", "channel", "error_code")
    list_select_related = ("user",)
    search_fields = ("user__username", "user__email", "smartcar_user_id", "error_code")
    date_hierarchy = "created_at"
    fields = (
        "id",
        "user",
        "channel",
        "outcome",
        "error_code",
        "error_description",
        "smartcar_request_id",
        "smartcar_user_id",
        "details",
        "vehicles",
        "vehicles_moved_from_other_user",
        "created_at",
        "expires_at",
        "opened_at",
        "returned_at",
        "completed_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
