"""The ``ctx`` object handed to every handler, and its JSON form.

A context is plain JSON data behind methods, so that the scheduler can store
it in one column after each phase and rebuild it exactly on another machine.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, cast

from envoy_django.exceptions import (
    EscalationError,
    FlowError,
    PayloadError,
    WaitNotFoundError,
)
from envoy_django.flow.results import Phase, WaitResult
from envoy_django.flow.values import copy_json as _copy_json
from envoy_django.flow.values import find_invalid, short_repr

FORMAT_VERSION = 1
PHASES = ("enter", "state", "exit", "route")
DONE_VALUES = (None, "finished", "error", "cancelled", "max_steps")
WAIT_TYPES = ("event", "spawn", "escalation")
# Terminal statuses a wait can reach (ctx.result(wait_id)["status"]).
WAIT_STATUSES = ("resolved", "done", "failed", "cancelled", "approved", "rejected", "timeout")
ESCALATION_INPUT_TYPES = ("select", "comment", "approve")
ON_REJECT = ("fail", "continue")

# The lengths of the columns these end up in (models.py uses the same numbers).
MAX_NAME = 200  # flow and state names
MAX_WAIT_ID = 100
MAX_USERNAME = 150  # Django's own username length
MAX_GROUP = 150  # and group name length
MAX_TIMEOUT = 100 * 365 * 24 * 3600.0  # seconds: a date past that overflows the calendar soon enough

_MISSING: Any = object()


def ensure_json(value: Any, path: str, where: str) -> None:
    """Raise PayloadError naming ``where`` and the offending key (see ``values.find_invalid``)."""
    found = find_invalid(value, path)
    if found:
        raise PayloadError(f"{where}: {found}")


def new_wait_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class Context:
    """What a handler reads and changes: input, output, data, waits, progress.

    Handlers receive a copy and return the context to continue with; the
    flow keeps the caller's context untouched if a handler raises.
    """

    __slots__ = ("_s",)

    def __init__(self, state: str, input: Any = None) -> None:
        self._s: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "state": state,
            "phase": "enter",
            "step": 1,
            "input": input,
            "output": None,
            "data": {},
            "done": None,
            "error": None,
            "waits": {},
            "progress": None,
            "notes": [],
        }

    # --- reading and writing values ----------------------------------------

    def input(self) -> Any:
        return self._s["input"]

    def output(self, value: Any = _MISSING) -> Any:
        """Without an argument, the output; with one, set it."""
        if value is _MISSING:
            return self._s["output"]
        self._s["output"] = value
        return value

    def set(self, key: str, value: Any) -> None:
        """Store data that persists across states; dotted keys nest."""
        parts = _split_key(key)
        node = self._s["data"]
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value

    def get(self, key: str, default: Any = None) -> Any:
        node: Any = self._s["data"]
        for part in _split_key(key):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def data(self) -> dict[str, Any]:
        """A copy of all stored data."""
        return _copy_json(self._s["data"])

    def state(self) -> str:
        return self._s["state"]

    def phase(self) -> Phase:
        """The phase the flow runs next: enter, state, exit or route."""
        return cast(Phase, self._s["phase"])

    def step(self) -> int:
        return self._s["step"]

    def done(self) -> str | None:
        """None while running, else finished, error, cancelled or max_steps."""
        return self._s["done"]

    def error(self, message: Any = _MISSING) -> str | None:
        """With a message, end the flow as failed; without, the error message."""
        if message is _MISSING:
            return self._s["error"]
        self._s["error"] = str(message)
        self._s["done"] = "error"
        return self._s["error"]

    def progress(self, fraction: Any = _MISSING, message: Any = None) -> dict | None:
        """Report progress (0..1) for the admin; without arguments, read it."""
        if fraction is _MISSING:
            return self._s["progress"]
        where = f"progress in state {self.state()!r}"
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise FlowError(f"{where} must be a number between 0 and 1, got {short_repr(fraction)}")
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise FlowError(f"{where} must be between 0 and 1, got {fraction}")
        self._s["progress"] = {"fraction": fraction, "message": None if message is None else str(message)}
        return self._s["progress"]

    def note(self, kind: str, **details: Any) -> None:
        """Record what happened in this step in the job's history (the admin job page shows it).

        ``kind`` names it (``"tool_error"``), ``details`` are JSON values.
        Notes belong to the step that made them: the next step starts with none.
        """
        if not isinstance(kind, str) or not kind:
            raise FlowError(f"note in state {self.state()!r}: kind must be a non-empty string, got {short_repr(kind)}")
        self._s["notes"].append({"kind": kind, **details})

    def notes(self) -> list[dict]:
        """The notes recorded in the current step."""
        return _copy_json(self._s["notes"])

    # --- waits ---------------------------------------------------------------

    def spawn(self, flow_name: str, input: Any = None, *, version: int | None = None) -> str:
        """Start a child job of ``flow_name``; the flow blocks until it ends.

        The child starts on the flow's highest registered version, or on ``version``.
        """
        if not isinstance(flow_name, str) or not flow_name or len(flow_name) > MAX_NAME:
            raise FlowError(
                f"spawn in state {self.state()!r}: flow name must be a non-empty string of at most "
                f"{MAX_NAME} characters, got {short_repr(flow_name)}"
            )
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise FlowError(f"spawn of {flow_name!r} in state {self.state()!r}: version must be a whole number "
                            f"of at least 1, got {short_repr(version)}")
        wait_id = new_wait_id("spawn")
        params = {"flow": flow_name, "input": input}
        if version is not None:
            params["version"] = version
        self._add_wait(wait_id, "spawn", params, None)
        return wait_id

    def wait_for(self, items: str | dict | Iterable[str | dict], timeout: float | None = None) -> list[str]:
        """Block until outside events resolve each wait id (or ``timeout`` seconds pass)."""
        where = f"wait_for in state {self.state()!r}"
        if isinstance(items, (str, dict)):
            items = [items]
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT
        ):
            raise FlowError(
                f"{where}: timeout must be a positive, finite number of seconds (at most "
                f"{MAX_TIMEOUT:.0f}), got {short_repr(timeout)}"
            )
        ids = []
        for item in items:
            params: dict[str, Any]
            if isinstance(item, str):
                wait_id, kind, params = item, "event", {}
            elif isinstance(item, dict) and isinstance(item.get("id"), str):
                wait_id, kind, params = item["id"], item.get("type", "event"), item.get("params") or {}
            else:
                raise FlowError(
                    f"{where}: each item must be an id string or a dict with an 'id', got {short_repr(item)}"
                )
            if not wait_id or len(wait_id) > MAX_WAIT_ID:
                raise FlowError(
                    f"{where}: a wait id must be a non-empty string of at most {MAX_WAIT_ID} characters, "
                    f"got {short_repr(wait_id)}"
                )
            if kind != "event":
                raise FlowError(
                    f"{where}: wait {wait_id!r} has type {short_repr(kind)}; "
                    "use ctx.spawn() or ctx.escalate() for those"
                )
            self._add_wait(wait_id, "event", params, timeout)
            ids.append(wait_id)
        return ids

    def escalate(
        self,
        user: str | None,
        message: str,
        inputs: list[dict] | None = None,
        on_reject: str = "fail",
        *,
        group: str | None = None,
    ) -> str:
        """Ask a person to approve or reject, with form inputs.

        ``user`` is a username, ``group`` a group name (any member may
        answer); give one or both. The scheduler checks that they exist.
        """
        state = self.state()
        where = f"escalate in state {state!r}"
        for what, value, limit in (("user", user, MAX_USERNAME), ("group", group, MAX_GROUP)):
            if value is not None and (not isinstance(value, str) or not value or len(value) > limit):
                raise EscalationError(
                    f"{where}: {what} must be a name of at most {limit} characters, got {short_repr(value)}"
                )
        if user is None and group is None:
            raise EscalationError(f"{where}: give a user, a group, or both")
        if on_reject not in ON_REJECT:
            raise EscalationError(f"{where}: on_reject must be 'fail' or 'continue', got {short_repr(on_reject)}")
        inputs = validate_escalation_inputs(inputs or [], where)
        wait_id = new_wait_id("escalation")
        params = {"user": user or "", "group": group or "", "message": str(message), "inputs": inputs,
                  "on_reject": on_reject}
        self._add_wait(wait_id, "escalation", params, None)
        return wait_id

    def waiting(self) -> list[str]:
        """Ids of the waits not yet resolved."""
        return [w["id"] for w in self._s["waits"].values() if w["status"] == "pending"]

    def result(self, wait_id: str) -> dict | None:
        """``{"status", "value", "error"}`` once resolved; None while pending."""
        wait = self._wait(wait_id)
        if wait["status"] == "pending":
            return None
        return {"status": wait["status"], "value": _copy_json(wait["value"]), "error": wait["error"]}

    def waits(self) -> list[dict]:
        """Every wait this flow raised, with type, params and status."""
        return _copy_json(list(self._s["waits"].values()))

    def _wait(self, wait_id: str) -> dict:
        try:
            return self._s["waits"][wait_id]
        except KeyError:
            raise WaitNotFoundError(f"state {self.state()!r} has no wait {short_repr(wait_id)}") from None

    def _add_wait(self, wait_id: str, kind: str, params: dict, timeout: float | None) -> None:
        existing = self._s["waits"].get(wait_id)
        if existing and existing["status"] == "pending":
            raise FlowError(f"state {self.state()!r} already waits for {wait_id!r}")
        self._s["waits"][wait_id] = {
            "id": wait_id,
            "type": kind,
            "params": params,
            "timeout": timeout,
            "status": "pending",
            "value": None,
            "error": None,
            "step": self.step(),
            "state": self.state(),
        }

    # --- serialization -------------------------------------------------------

    def serialize(self) -> dict[str, Any]:
        """A JSON-ready copy of everything the flow needs to resume."""
        return _copy_json(self._s)

    @classmethod
    def from_serialized(cls, data: dict[str, Any], results: Mapping[str, WaitResult] | None = None) -> Context:
        """The context ``serialize()`` stored; ``results`` resolves waits that ended since (wait id -> result).

        Only whoever runs the flow resolves waits, when it loads the context:
        handlers read results (``ctx.result``), they never set them.
        """
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise FlowError(f"not a serialized envoy context (version {FORMAT_VERSION}): {short_repr(data, 80)}")
        missing = {"state", "phase", "step", "input", "output", "data", "done", "error", "waits"} - data.keys()
        if missing:
            raise FlowError(f"serialized context lacks {sorted(missing)}")
        ctx = cls.__new__(cls)
        ctx._s = _copy_json(data)
        ctx._s.setdefault("progress", None)
        ctx._s.setdefault("notes", [])
        for wait_id, result in (results or {}).items():
            if result["status"] not in WAIT_STATUSES:
                raise FlowError(f"wait {wait_id!r}: unknown status {short_repr(result['status'])}")
            ctx._wait(wait_id).update(status=result["status"], value=result["value"], error=result["error"])
        return ctx

    def copy(self) -> Context:
        ctx = Context.__new__(Context)
        ctx._s = _copy_json(self._s)
        return ctx

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Context) and other._s == self._s

    def __repr__(self) -> str:
        return f"<Context state={self.state()!r} phase={self.phase()!r} step={self.step()} done={self.done()!r}>"


def _split_key(key: str) -> list[str]:
    if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
        raise FlowError(f"data key must be a non-empty dotted string, got {short_repr(key)}")
    return key.split(".")


def validate_escalation_inputs(inputs: Any, where: str) -> list[dict]:
    """Check escalation inputs; the admin builds its form from them.

    ``select`` options may be a dict (value -> label), a list of values, or
    a list of ``[value, label]`` pairs; they are stored as pairs, in the
    order given, because a JSON object's key order does not survive
    PostgreSQL's jsonb.
    """
    if not isinstance(inputs, list):
        raise EscalationError(f"{where}: inputs must be a list of dicts")
    seen: set[str] = set()
    cleaned = []
    for index, spec in enumerate(inputs):
        if not isinstance(spec, dict) or not isinstance(spec.get("id"), str) or not spec["id"]:
            raise EscalationError(f"{where}: input {index} needs a string 'id'")
        input_id = spec["id"]
        kind = spec.get("type")
        if kind not in ESCALATION_INPUT_TYPES:
            raise EscalationError(
                f"{where}: input {short_repr(input_id)} has unknown type {short_repr(kind)} "
                f"(expected one of {', '.join(ESCALATION_INPUT_TYPES)})"
            )
        if input_id in seen:
            raise EscalationError(f"{where}: input id {short_repr(input_id)} is used twice")
        seen.add(input_id)
        item = {"id": input_id, "type": kind, "label": str(spec.get("label") or input_id),
                "required": bool(spec.get("required", kind == "select"))}
        if kind == "select":
            pairs = option_pairs(spec.get("options"))
            if not pairs:
                raise EscalationError(f"{where}: select input {short_repr(input_id)} needs non-empty 'options'")
            values = [value for value, _ in pairs]
            if len(set(values)) != len(values):
                raise EscalationError(f"{where}: select input {short_repr(input_id)} offers an option twice")
            item["options"] = [list(pair) for pair in pairs]
        cleaned.append(item)
    return cleaned


def option_pairs(options: Any) -> list[tuple[str, str]]:
    """A select input's options as ``(value, label)`` pairs, in order; [] if there are none.

    Reads the stored form (a list of pairs) and the forms ``escalate`` accepts
    (a dict, a list of values), so escalations stored before the pairs still read.
    """
    if isinstance(options, dict):
        return [(str(value), str(label)) for value, label in options.items()]
    if not isinstance(options, list):
        return []
    pairs = []
    for option in options:
        if isinstance(option, (list, tuple)) and len(option) == 2:
            pairs.append((str(option[0]), str(option[1])))
        else:
            pairs.append((str(option), str(option)))
    return pairs
