"""Read-only admin for Connect attempts: "why did my car not link?" in one search.

Smartcar's error code and description are shown as plain, auto-escaped text. Must never show
the stored digests (state, ticket, browser binding, code) or `redirect_url`, which for the
recovery hand-off carries the authorization code.
"""

from django.contrib import admin

from oauth_smartcar.models import ConnectAttempt
from vehicles.admin_roles import ReadOnlyAdmin


@admin.register(ConnectAttempt)
class ConnectAttemptAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "user_email",
        "user_id_display",
        "channel",
        "outcome",
        "error_code",
        "error_description",
        "smartcar_user_id",
        "completed_at",
    )
    list_filter = ("outcome", "channel", ("created_at", admin.DateFieldListFilter), "error_code")
    list_select_related = ("user",)
    # "…__exact" on the integer id: Django compares it as text, so any search term is safe.
    search_fields = (
        "user__email",
        "user__username",
        "user__id__exact",
        "smartcar_user_id",
        "error_code",
    )
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

    @admin.display(description="User email", ordering="user__email")
    def user_email(self, attempt: ConnectAttempt) -> str:
        return attempt.user.email

    @admin.display(description="User id", ordering="user_id")
    def user_id_display(self, attempt: ConnectAttempt) -> int:
        return attempt.user_id
