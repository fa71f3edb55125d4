"""The `support` group: read access to accounts, vehicles, Connect attempts and telemetry, plus
"poll now" (`vehicles.poll_vehicle`). It never gets add, change or delete permissions: changing
data and disconnecting vehicles stay with superusers.

Permissions are normally created after `migrate` finishes (post_migrate), too late for a data
migration in the same run, so they are created here first from the historical models.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "support"
APPS = ("vehicles", "oauth_smartcar", "telemetry")
EXTRA = (("vehicles", "poll_vehicle"),)


def create_support_group(apps, schema_editor):
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
    view = Permission.objects.using(db).filter(
        content_type__app_label__in=APPS, codename__startswith="view_"
    )
    extra = [
        Permission.objects.using(db).get(content_type__app_label=app, codename=codename)
        for app, codename in EXTRA
    ]
    group.permissions.add(*view, *extra)


def delete_support_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(
        name=GROUP
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("vehicles", "0003_vehicle_poll_permission"),
        ("oauth_smartcar", "0001_initial"),
        ("telemetry", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_support_group, delete_support_group)]
