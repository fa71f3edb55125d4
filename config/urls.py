"""Root URLs: the API under API_PREFIX, the first seed's paths, admin, OpenAPI."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

api_prefix = settings.API_PREFIX.strip("/")

urlpatterns = [
    path("admin/", admin.site.urls),
    path(f"{api_prefix}/", include("oauth_smartcar.urls")),
    path("", include("oauth_smartcar.legacy_urls")),
    path(f"{api_prefix}/", include("telemetry.urls")),
    path(f"{api_prefix}/", include("telemetry.webhook_urls")),
    path("", include("telemetry.legacy_urls")),
    path(f"{api_prefix}/schema/", SpectacularAPIView.as_view(), name="openapi-schema"),
    path(
        f"{api_prefix}/docs/",
        SpectacularSwaggerView.as_view(url_name="openapi-schema"),
        name="openapi-docs",
    ),
]

if settings.SMARTCAR_EMULATOR:
    # The local Smartcar stand-in; settings turn it on with DEBUG only (and in the test settings).
    urlpatterns.append(
        path(f"{settings.SMARTCAR_EMULATOR_PATH}/", include("smartcar_emulator.urls"))
    )
    # The demo SPA page at / (DEBUG with the emulator only).
    urlpatterns.append(path("", include("demo.urls")))
