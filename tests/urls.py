from django.contrib import admin
from django.urls import include, path

from tests import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("envoy/", include("envoy_django.urls")),
    path("async/schedule/", views.schedule_view),
    path("async/reply/", views.reply_view),
]
