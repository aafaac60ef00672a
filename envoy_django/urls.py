"""``path("envoy/", include("envoy_django.urls"))``: what envoy serves outside the admin."""

from django.urls import path

from envoy_django.views import metrics_view

app_name = "envoy_django"
urlpatterns = [
    path("metrics/", metrics_view, name="metrics"),
]
