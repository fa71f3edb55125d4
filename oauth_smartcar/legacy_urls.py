"""The first seed's paths, outside API_PREFIX: `/v1/ev/connect` and `/oauth/smartcar/callback`."""

from django.urls import path

from oauth_smartcar import apis, views

urlpatterns = [
    path("v1/ev/connect", apis.EvConnectApi.as_view(), name="ev-connect"),
    path("oauth/smartcar/callback", views.oauth_redirect, name="smartcar-callback"),
]
