"""Smartcar's webhook endpoint, included under API_PREFIX (the URL `/smartcar/login` advertises)."""

from django.urls import path

from telemetry.webhooks_api import SmartcarWebhookApi

urlpatterns = [
    path("smartcar/webhook", SmartcarWebhookApi.as_view(), name="smartcar-webhook"),
]
