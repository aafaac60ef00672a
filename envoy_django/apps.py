from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class EnvoyConfig(AppConfig):
    name = "envoy_django"
    verbose_name = "Envoy workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from envoy_django.dispatch.rq_settings import use_json_serializer

        use_json_serializer()
        autodiscover_modules("flows")
        _register_task_backends()
        _install_metrics()


def _install_metrics() -> None:
    from envoy_django.conf import envoy_settings

    if envoy_settings.METRICS:
        from envoy_django import metrics

        try:
            metrics.install()
        except ImportError:  # no prometheus_client: check E016 says so
            pass


def _register_task_backends() -> None:
    """Make the flows of every ``EnvoyBackend`` in ``TASKS`` runnable in this process (a worker included)."""
    from django.conf import settings

    if not getattr(settings, "TASKS", None):
        return
    try:
        from envoy_django.tasks import register_configured_backends
    except ImportError:  # Django 5.2 without the django-tasks backport: no Tasks backend can be built
        return
    register_configured_backends()
