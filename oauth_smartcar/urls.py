"""The Connect flow under API_PREFIX (seed 002's paths)."""

from django.urls import path

from oauth_smartcar import apis, views

app_name = "smartcar"

urlpatterns = [
    path("smartcar/login", apis.SmartcarLoginApi.as_view(), name="login"),
    path("smartcar/connect", views.connect_start, name="connect-start"),
    path("smartcar/redirect", views.oauth_redirect, name="redirect"),
    path(
        "smartcar/complete-connect",
        apis.SmartcarCompleteConnectApi.as_view(),
        name="complete-connect",
    ),
    path("smartcar/oauth-done", views.oauth_done, name="oauth-done"),
]
