"""Who may do what in the admin, in one place for every app's admin.

Support staff (the `support` group, created by `core/migrations/0001_support_group.py`) hold
only `view_*` permissions and `vehicles.poll_vehicle`. Changing data and disconnecting vehicles
is for superusers only, whatever permissions a staff account was otherwise given: these base
classes check `is_superuser` themselves rather than trusting the permission table. Nothing is
deleted or added through the admin: history stays, and vehicles leave through "disconnect".
"""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

SUPPORT_GROUP = "support"
POLL_PERMISSION = "vehicles.poll_vehicle"


def is_superuser(request: HttpRequest) -> bool:
    return bool(getattr(request.user, "is_superuser", False))


class ReadOnlyAdmin(admin.ModelAdmin):
    """A history table: viewable by whoever has the view permission, changed by nobody."""

    # Counting every row of a large table on each page load is what makes admin slow at scale.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SuperuserWritesAdmin(ReadOnlyAdmin):
    """Viewable with the view permission; the form saves for superusers only."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_superuser(request)


def can_poll(request: HttpRequest) -> bool:
    return bool(request.user.has_perm(POLL_PERMISSION))
