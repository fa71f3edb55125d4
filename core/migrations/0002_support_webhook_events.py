"""Support may also view webhook events (telemetry.WebhookEvent arrived after 0001).

Same step as 0001: create the permissions from the historical models, then grant every `view_*`
of the support apps; granting is idempotent, so nothing 0001 gave is changed.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "support"
APPS = ("vehicles", "oauth_smartcar", "telemetry")


def grant_views(apps, schema_editor):
    db = schema_editor.connection.alias
    for label in APPS:
        app_config = apps.get_app_config(label)
        # Historical app configs carry no models module, which create_permissions checks first.
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, using=db, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(db).get_or_create(name=GROUP)
    group.permissions.add(
        *Permission.objects.using(db).filter(
            content_type__app_label__in=APPS, codename__startswith="view_"
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_support_group"),
        ("telemetry", "0002_webhookevent"),
    ]

    # Reversing 0001 deletes the group; nothing to undo here on its own.
    operations = [migrations.RunPython(grant_views, migrations.RunPython.noop)]
