"""ENVOY settings: defaults, override_settings, and system checks with ids and hints."""

import pytest
from django.core import checks
from django.test import override_settings

from envoy_django.checks import check_envoy_settings
from envoy_django.conf import DEFAULTS, envoy_settings


def _ids(**envoy):
    with override_settings(ENVOY=envoy):
        return sorted(message.id for message in check_envoy_settings())


def test_defaults_and_override():
    with override_settings(ENVOY={}):
        assert envoy_settings.MAX_RETRIES == DEFAULTS["MAX_RETRIES"] == 3
        assert envoy_settings.QUEUE == "envoy"
    with override_settings(ENVOY={"MAX_RETRIES": 7}):
        assert envoy_settings.MAX_RETRIES == 7


def test_unknown_setting_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="unknown ENVOY setting 'NOPE'"):
        _ = envoy_settings.NOPE


def test_valid_settings_pass_the_checks():
    assert _ids(EXECUTION="immediate") == []
    assert _ids(EXECUTION="rq", QUEUE="envoy") == []


def test_misconfiguration_is_reported_with_ids_and_hints():
    assert _ids(MAX_RETRIES=-1) == ["envoy_django.E003"]
    assert _ids(LEASE_SECONDS="30") == ["envoy_django.E003"]
    assert _ids(RETRIES=3) == ["envoy_django.E002"]
    assert _ids(EXECUTION="celery") == ["envoy_django.E004"]
    assert _ids(EXECUTION="rq", QUEUE="missing") == ["envoy_django.E005"]
    with override_settings(ENVOY={"EXECUTION": "rq", "QUEUE": "missing"}):
        (message,) = check_envoy_settings()
    assert isinstance(message, checks.Error) and "RQ_QUEUES" in message.hint


@pytest.mark.django_db  # Django 6.1's check command runs the database checks too
def test_checks_run_with_manage_py_check():
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    with override_settings(ENVOY={"EXECUTION": "celery"}), pytest.raises(SystemCheckError, match="E004"):
        call_command("check")
