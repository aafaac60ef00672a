"""Flow names to flows: what ``scheduler.schedule(name)`` and workers look up.

``register()`` usually runs in an app's ``flows.py``, which the app config
imports at start-up (like ``admin.py``), so every process - web or worker -
knows the same names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from envoy_django.concurrency import Limit
from envoy_django.exceptions import FlowDefinitionError, NotReadyError, UnknownFlowError, UnknownFlowVersionError
from envoy_django.flow.context import MAX_NAME
from envoy_django.flow.values import find_invalid, short_repr

if TYPE_CHECKING:
    from envoy_django.flow import StateFlow

_flows: dict[str, dict[int, StateFlow]] = {}  # flow name -> version -> flow
_queues: dict[str, str] = {}  # flow name -> the django-rq queue its messages go to, if not ENVOY["QUEUE"]
_limits: dict[str, Limit] = {}  # flow name -> its concurrency limit, for the flows registered with one
MAX_QUEUE = 100
MAX_VERSION = 2**31 - 1  # Job.flow_version's column


def register(
    name: str,
    flow: StateFlow,
    *,
    version: int = 1,
    replace: bool = False,
    queue: str | None = None,
    max_active: int | None = None,
    concurrency_key: str | Callable[[Any], Any] | None = None,
) -> StateFlow:
    """Make ``flow`` schedulable as ``name``. Re-registering a name and version needs ``replace=True``.

    ``version``: several versions of one flow may be registered at once.
    ``schedule()`` starts the highest; a job runs to its end on the version
    it started on, and waits (pending, saying why) in a process that does
    not have that version, for one that does.

    ``queue``: the django-rq queue every message of this flow goes to (its
    start, retries, resumes and the sweep's re-sends), served by
    ``envoy_worker --queue NAME``; by default ``ENVOY["QUEUE"]``.

    ``max_active``: at most this many jobs of the flow are active (started
    and not finished) at once; with ``concurrency_key`` (a dotted path into
    the input, like ``"customer.id"``, or a callable of the input), at most
    this many per key. A job over the limit stays pending, waiting for a
    slot, and starts when a job of its key ends, oldest first.

    The queue and the limit belong to the flow's name, for all its versions:
    the last ``register`` of the name sets them.
    """
    from envoy_django.flow import StateFlow

    if queue is not None and (not isinstance(queue, str) or not queue or len(queue) > MAX_QUEUE):
        raise FlowDefinitionError(
            f"register({short_repr(name)}, ...): queue must be a queue name of at most {MAX_QUEUE} characters, "
            f"got {short_repr(queue)}"
        )

    if not isinstance(name, str) or not name or len(name) > MAX_NAME or find_invalid(name, text=True):
        raise FlowDefinitionError(
            f"flow name must be a non-empty string of at most {MAX_NAME} characters, got {short_repr(name)}"
        )
    if not isinstance(flow, StateFlow):
        raise FlowDefinitionError(f"register({name!r}, ...) needs a StateFlow, got {type(flow).__name__}")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise FlowDefinitionError(
            f"register({name!r}, ...): version must be a whole number from 1 to {MAX_VERSION}, "
            f"got {short_repr(version)}")
    limit = Limit.checked(name, max_active, concurrency_key)
    versions = _flows.setdefault(name, {})
    if version in versions and versions[version] is not flow and not replace:
        raise FlowDefinitionError(
            f"a different flow is already registered as {name!r} version {version}; pass replace=True to swap it"
        )
    versions[version] = flow
    if queue is None:
        _queues.pop(name, None)
    else:
        _queues[name] = queue
    if limit is None:
        _limits.pop(name, None)
    else:
        _limits[name] = limit
    return flow


def unregister(name: str, version: int | None = None) -> None:
    """Forget flow ``name`` (or only that version of it)."""
    if version is not None and len(_flows.get(name, {})) > 1:
        _flows[name].pop(version, None)
    else:
        _flows.pop(name, None)
        _queues.pop(name, None)
        _limits.pop(name, None)


def runnable() -> list[str]:
    """``"name:version"`` for every flow version this process can run (the claim takes no other job)."""
    return [f"{name}:{version}" for name, versions in _flows.items() for version in versions]


def has_version(name: str, version: int) -> bool:
    return version in _flows.get(name, ())


def versions_of(name: str) -> list[int]:
    """The versions of flow ``name`` registered in this process, lowest first."""
    return sorted(_flows.get(name, {}))


def latest(name: str) -> tuple[StateFlow, int]:
    """The highest registered version of flow ``name`` and its number: what a new job starts on."""
    flow = get_flow(name)
    return flow, max(_flows[name])


def limit_of(name: str) -> Limit | None:
    """The concurrency limit registered for flow ``name``, if any."""
    return _limits.get(name)


def limited_flows() -> list[str]:
    """The names of the flows registered with a concurrency limit."""
    return sorted(_limits)


def concurrency_key(name: str, input: Any) -> str | None:
    """The concurrency key of a new job of flow ``name`` (None if the flow has no limit).

    An ``InvalidArgumentError`` naming the flow and the key's path when the input has none.
    """
    limit = _limits.get(name)
    return None if limit is None else limit.key_for(name, input)


def queue_of(name: str) -> str | None:
    """The queue registered for flow ``name``, or None for ENVOY["QUEUE"]."""
    return _queues.get(name)


def routed_queues() -> dict[str, str]:
    """Flow name -> queue, for the flows registered with one."""
    return dict(_queues)


def get_flow(name: str, version: int | None = None) -> StateFlow:
    """The flow registered as ``name``: that ``version`` of it, or its highest version."""
    if not isinstance(name, str):
        raise UnknownFlowError(f"a flow name is a string, got {short_repr(name)}")
    versions = _flows.get(name)
    if versions:
        if version is None:
            return versions[max(versions)]
        if version in versions:
            return versions[version]
        raise UnknownFlowVersionError(
            f"flow {name!r} version {short_repr(version)} is not registered in this process "
            f"(registered: {', '.join(map(str, sorted(versions)))})")
    _require_ready()
    names = sorted(_flows)
    close = difflib.get_close_matches(name, names, n=3) if len(name) <= 200 else []
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    known = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "") if names else "none"
    raise UnknownFlowError(f"no flow is registered as {short_repr(name)}{hint} (registered: {known})")


def registered() -> dict[str, StateFlow]:
    """Every registered flow name, with its highest version."""
    return {name: versions[max(versions)] for name, versions in _flows.items()}


def _require_ready() -> None:
    from django.apps import apps

    if not apps.ready:
        raise NotReadyError(
            "flows are registered when Django starts: call django.setup() (or use manage.py) "
            "before scheduling or running jobs"
        )
