from django.apps import AppConfig


class OauthSmartcarConfig(AppConfig):
    name = "oauth_smartcar"
    verbose_name = "Smartcar Connect"

    def ready(self) -> None:
        # Importing registers the Connect URL checks (oauth_smartcar.E001…).
        from oauth_smartcar import checks  # noqa: F401
