"""What one step of a flow did: the typed contract between the engine and whoever runs it.

``StateFlow.advance(ctx)`` returns a ``StepResult``: the context to go on
with, where the work ran (the history row's state, phase and step) and the
waits the step raised, each a frozen dataclass of its kind. A runner (the
scheduler's executor, a test) needs nothing else from the engine, and
touches none of its private parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    from envoy_django.flow.context import Context

Phase = Literal["enter", "state", "exit", "route"]
WaitKind = Literal["event", "spawn", "escalation"]
# The outcomes a wait can reach (ctx.result(wait_id)["status"]).
WaitOutcome = Literal["resolved", "done", "failed", "cancelled", "approved", "rejected", "timeout"]


class WaitResult(TypedDict):
    """``ctx.result(wait_id)``: how a wait ended."""

    status: WaitOutcome
    value: Any
    error: str | None


@dataclass(frozen=True)
class EventWait:
    """``ctx.wait_for(...)``: an outside event, resolved by ``scheduler.resolve_blocking_job``."""

    id: str
    state: str
    timeout: float | None
    params: dict[str, Any]


@dataclass(frozen=True)
class SpawnWait:
    """``ctx.spawn(flow, input)``: a child job; the wait resolves when it ends."""

    id: str
    state: str
    flow: str
    input: Any
    version: int | None = None  # None: the flow's highest registered version

    @property
    def params(self) -> dict[str, Any]:
        params = {"flow": self.flow, "input": self.input}
        if self.version is not None:
            params["version"] = self.version
        return params


@dataclass(frozen=True)
class EscalationWait:
    """``ctx.escalate(...)``: a question to a person (a user, a group or both)."""

    id: str
    state: str
    user: str
    group: str
    message: str
    inputs: list[dict[str, Any]]
    on_reject: Literal["fail", "continue"]

    @property
    def params(self) -> dict[str, Any]:
        return {"user": self.user, "group": self.group, "message": self.message, "inputs": self.inputs,
                "on_reject": self.on_reject}


NewWait = EventWait | SpawnWait | EscalationWait


def new_wait(spec: dict[str, Any]) -> NewWait:
    """The typed form of a wait as the context stores it."""
    params = spec["params"]
    if spec["type"] == "spawn":
        return SpawnWait(id=spec["id"], state=spec["state"], flow=params["flow"], input=params["input"],
                         version=params.get("version"))
    if spec["type"] == "escalation":
        return EscalationWait(
            id=spec["id"], state=spec["state"], user=params["user"], group=params.get("group", ""),
            message=params["message"], inputs=params["inputs"], on_reject=params["on_reject"],
        )
    return EventWait(id=spec["id"], state=spec["state"], timeout=spec["timeout"], params=params)


@dataclass(frozen=True)
class StepResult:
    """One ``advance()``: the context to continue with, where the work ran, and the waits it raised.

    A step runs the next phase that has a handler, folding the empty phases
    around it in; ``state``, ``phase`` and ``step`` name that phase (the
    history row), which may be in a later state than the step began in.
    """

    context: Context
    state: str
    phase: Phase
    step: int
    new_waits: tuple[NewWait, ...]
