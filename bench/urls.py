"""The admin and envoy's own URLs, so the scale benchmark can time the real views (changelists, overview, metrics)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [path("admin/", admin.site.urls), path("envoy/", include("envoy_django.urls"))]
