from django.apps import AppConfig


class VehiclesConfig(AppConfig):
    name = "vehicles"
    verbose_name = "Vehicles and Smartcar accounts"

    def ready(self) -> None:
        from vehicles.checks import register_checks

        register_checks()
