"""The admin's own strings are marked for translation, as Django's are: lazily, so the request's language applies."""

from __future__ import annotations

from django.contrib import admin
from django.utils.functional import Promise

from envoy_django.admin.escalations import EscalationAdmin
from envoy_django.admin.jobs import JobAdmin
from envoy_django.models import Escalation, Job


def test_column_headers_filters_and_actions_are_lazy_translations():
    site = admin.site
    for model, model_admin_class in ((Job, JobAdmin), (Escalation, EscalationAdmin)):
        model_admin = site.get_model_admin(model)
        assert isinstance(model_admin, model_admin_class)
        for name in (*model_admin.list_display, *model_admin.readonly_fields):
            attribute = getattr(model_admin, name, None)
            if callable(attribute):
                assert isinstance(attribute.short_description, Promise), (model.__name__, name)
        for list_filter in model_admin.list_filter:
            if isinstance(list_filter, type):
                assert isinstance(list_filter.title, Promise), list_filter
        assert isinstance(model_admin.search_help_text, Promise)
        for action in model_admin.actions or ():
            assert isinstance(action.short_description, Promise), action
