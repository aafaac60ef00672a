from django.contrib import admin
from django.urls import path

from tests import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("async/schedule/", views.schedule_view),
    path("async/reply/", views.reply_view),
]
