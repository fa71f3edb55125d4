"""Support may also view the hourly reading rollup (telemetry.ReadingHour arrived after 0002).

The same idempotent step as 0002, run again now that the rollup's permissions exist, so that the
support group keeps viewing every model of its apps.
"""

from importlib import import_module

from django.db import migrations

grant_views = import_module("core.migrations.0002_support_webhook_events").grant_views


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_support_webhook_events"),
        ("telemetry", "0005_reading_hour_rollup"),
    ]

    operations = [migrations.RunPython(grant_views, migrations.RunPython.noop)]
