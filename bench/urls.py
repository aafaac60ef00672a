"""The admin, so the scale benchmark can time its real changelist views."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
