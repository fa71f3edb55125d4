from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        # Importing registers the JWT system checks (core.E001…) and the OpenAPI description of
        # the Bearer JWT scheme.
        from core import checks, schema  # noqa: F401
