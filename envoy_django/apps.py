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
