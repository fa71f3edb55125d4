"""Test-only URLconf: the emulator mounted where the project mounts it."""

from django.urls import include, path

urlpatterns = [path("_smartcar/", include("smartcar_emulator.urls"))]
