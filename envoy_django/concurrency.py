"""Concurrency limits: how many jobs of a flow (or of each key of it) may be active at once.

``register(name, flow, max_active=3, concurrency_key="customer.id")`` keeps
at most three jobs per customer active. Pure Python, like the registry that
holds them: the scheduler (``transitions``) enforces them in the claim.

A job's key is computed from its input when it is scheduled and stored on
the job, so the claim can count the key's active jobs with one indexed
query. A flow limited as a whole has the key ``""``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from envoy_django.exceptions import FlowDefinitionError, InvalidArgumentError
from envoy_django.flow.values import find_invalid, short_repr

MAX_KEY = 255  # Job.concurrency_key's column
KeySource = str | Callable[[Any], Any]


@dataclass(frozen=True)
class Limit:
    """``max_active`` jobs at once, per value of ``key`` (a dotted path into the input, or a callable of it)."""

    max_active: int
    key: KeySource | None = None

    @classmethod
    def checked(cls, flow: str, max_active: Any, key: Any) -> Limit | None:
        where = f"register({short_repr(flow)}, ...)"
        if max_active is None:
            if key is not None:
                raise FlowDefinitionError(f"{where}: concurrency_key needs max_active")
            return None
        if isinstance(max_active, bool) or not isinstance(max_active, int) or max_active < 1:
            raise FlowDefinitionError(f"{where}: max_active must be a whole number of at least 1, "
                                      f"got {short_repr(max_active)}")
        if key is not None and not callable(key) and (
            not isinstance(key, str) or not key or any(not part for part in key.split("."))
        ):
            raise FlowDefinitionError(f"{where}: concurrency_key must be a dotted path into the input "
                                      f"(e.g. 'customer.id') or a callable of the input, got {short_repr(key)}")
        return cls(max_active, key)

    def key_for(self, flow: str, input: Any) -> str:
        """The job's key; an ``InvalidArgumentError`` naming the flow and the path when the input has none."""
        if self.key is None:
            return ""
        where = f"concurrency_key of flow {flow!r}"
        if callable(self.key):
            try:
                value = self.key(input)
            except Exception as exc:
                raise InvalidArgumentError(f"{where} raised {type(exc).__name__}: {short_repr(str(exc))}") from exc
        else:
            value = input
            for part in self.key.split("."):
                if not isinstance(value, dict) or part not in value:
                    raise InvalidArgumentError(
                        f"{where}: the input has no {self.key!r} (no {part!r} in {short_repr(value)})")
                value = value[part]
        return _as_key(value, where)


def _as_key(value: Any, where: str) -> str:
    if value is None or isinstance(value, (dict, list)):
        raise InvalidArgumentError(f"{where} must be a string or a number, got {short_repr(value)}")
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > MAX_KEY or find_invalid(text, text=True):
        raise InvalidArgumentError(
            f"{where} must be text of at most {MAX_KEY} characters that a database can store, got {short_repr(text)}")
    return text


def describe(flow: str, key: str) -> str:
    """How the admin and the logs name a key's slots."""
    return f"{flow} {key}" if key else flow
