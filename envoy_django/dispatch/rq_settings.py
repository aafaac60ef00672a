"""The Envoy queue's entry in ``RQ_QUEUES``: JSON wherever django-rq builds the queue.

django-rq builds a queue from its ``RQ_QUEUES`` entry in every place it
uses one, its dashboard included, and without a ``SERIALIZER`` it uses RQ's
pickle serializer: opening the queue's page would unpickle whatever is in
Redis. So the app sets the Envoy queue's ``SERIALIZER`` to RQ's JSON
serializer when the site did not (at start-up, and whenever the settings
change in tests), and check ``envoy_django.E007`` refuses any other.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

JSON_SERIALIZER = "rq.serializers.JSONSerializer"


def envoy_queue_entry() -> dict[str, Any] | None:
    from envoy_django.conf import envoy_settings

    queues = getattr(settings, "RQ_QUEUES", None)
    entry = queues.get(envoy_settings.QUEUE) if isinstance(queues, dict) else None
    return entry if isinstance(entry, dict) else None


def use_json_serializer() -> None:
    """Give the Envoy queue RQ's JSON serializer, unless the site chose one (E007 judges that)."""
    entry = envoy_queue_entry()
    if entry is not None:
        entry.setdefault("SERIALIZER", JSON_SERIALIZER)


def is_json_serializer(value: Any) -> bool:
    """Whether ``value`` (a dotted path or a class, as RQ accepts) is RQ's JSON serializer."""
    if isinstance(value, str):
        return value == JSON_SERIALIZER
    try:
        from rq.serializers import JSONSerializer
    except ImportError:
        return False
    return value is JSONSerializer
