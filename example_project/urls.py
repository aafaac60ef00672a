from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("envoy/", include("envoy_django.urls")),  # envoy/metrics/, for Prometheus
]
