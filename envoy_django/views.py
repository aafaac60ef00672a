"""The views ``envoy_django.urls`` serves: the Prometheus endpoint.

Never open by default: a scrape needs the bearer token
``ENVOY["METRICS_TOKEN"]`` (what a Prometheus server sends, with
``authorization: {credentials: ...}``), or a logged-in user who may view
jobs (an operator looking at it in a browser).
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse

from envoy_django.conf import envoy_settings


def _authorized(request: HttpRequest) -> bool:
    token = envoy_settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[len("Bearer "):].encode(), str(token).encode())
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.has_perm("envoy_django.view_job"))


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus text format: this site's counters (summed over its processes) and the database's gauges."""
    if not _authorized(request):
        response = HttpResponse("Envoy metrics need ENVOY['METRICS_TOKEN'] as a bearer token, or a user who may "
                                "view jobs.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="envoy metrics"'
        return response
    try:
        from envoy_django.metrics import exposition

        body, content_type = exposition()
    except ImportError:
        return HttpResponse("Envoy metrics need envoy-django's [metrics] extra: "
                            "pip install 'envoy-django[metrics]'\n", status=501, content_type="text/plain")
    return HttpResponse(body, content_type=content_type)
