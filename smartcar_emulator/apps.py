from django.apps import AppConfig


class SmartcarEmulatorConfig(AppConfig):
    name = "smartcar_emulator"
    verbose_name = "Smartcar emulator (development and tests only)"
