"""The demo's URLs, mounted at the site root only when the Smartcar emulator is on."""

from django.urls import path

from demo import views

app_name = "demo"

urlpatterns = [
    path("", views.home, name="home"),
    path("_demo/token", views.token, name="token"),
]
