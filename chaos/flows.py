"""The flows the chaos run schedules (autodiscovered: ``chaos`` is in INSTALLED_APPS).

``chaos_main`` has ten states S0..S9, each one on_state handler. Its input
(kept as ``data.plan``, since each state's input is the previous output) is
a plan: ``{"key", "children", "wait", "token"}``. S3 spawns
``children`` children (``chaos_child``, three states), S4 checks that each
ended ``done`` with the right output; with ``wait``, S6 waits for the
outside event ``approval`` and S7 checks the value the harness resolved it
with (``{"token": token}``). Every state appends its name to ``data.trail``,
and the output is the trail: in a correct run it lists each state once.

With ``ENVOY_CHAOS_RECORD=1`` (set by chaos/run.py) every handler call is
recorded in the ``chaos_exec`` table (key, state, lease owner, pid, start,
end): the harness checks that no two owners ran handlers of one job at the
same time, which the Step history alone cannot show (a worker that lost its
lease writes no Step).
"""

from __future__ import annotations

import os
import random
import time

from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from envoy_django import StateFlow, register
from envoy_django.scheduler.executor import default_owner

MAIN_STATES = [f"S{i}" for i in range(10)]
CHILD_STATES = ["C0", "C1", "C2"]

RECORD = os.environ.get("ENVOY_CHAOS_RECORD") == "1"
FAIL_RATE = float(os.environ.get("ENVOY_CHAOS_FAIL_RATE") or 0)
_lo, _hi = (float(x) / 1000 for x in (os.environ.get("ENVOY_CHAOS_WORK_MS") or "0,0").split(","))


class InjectedFailure(RuntimeError):
    """A handler failure the harness asked for (retried by the scheduler)."""


def _record_start(key: str, state: str, step: int) -> int | None:
    if not RECORD:
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO chaos_exec (job_key, state, step, owner, pid, started_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            [key, state, step, default_owner(), os.getpid(), timezone.now()],
        )
        return cursor.fetchone()[0]


def _record_end(exec_id: int | None, outcome: str) -> None:
    """Record the end; if the connection was terminated meanwhile, on a new one (the end must be known)."""
    if exec_id is None:
        return
    finished = timezone.now()
    for attempt in (1, 2):
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE chaos_exec SET finished_at = %s, outcome = %s WHERE id = %s",
                    [finished, outcome, exec_id],
                )
            return
        except (OperationalError, InterfaceError):
            if attempt == 2:
                raise
            connection.close()


def _act(ctx, plan: dict, state: str) -> None:
    if state == "S3" and plan.get("children"):
        ctx.set("children", [ctx.spawn("chaos_child", {"key": f"{plan['key']}/c{i}"})
                             for i in range(plan["children"])])
    elif state == "S4":
        for wait_id in ctx.get("children") or []:
            result = ctx.result(wait_id)
            if result is None or result["status"] != "done" or result["value"] != CHILD_STATES:
                ctx.error(f"child {wait_id} ended {result!r}")
    elif state == "S6" and plan.get("wait"):
        ctx.wait_for(["approval"])
    elif state == "S7" and plan.get("wait"):
        result = ctx.result("approval")
        if result is None or result["status"] != "resolved" or result["value"] != {"token": plan["token"]}:
            ctx.error(f"event approval resolved with {result!r}, expected token {plan['token']}")


def _work(ctx):
    if ctx.get("plan") is None:  # first state: each state's input is the previous output
        ctx.set("plan", ctx.input())
    plan = ctx.get("plan")
    state = ctx.state()
    exec_id = _record_start(plan["key"], state, ctx.step())
    outcome = "raised"
    try:
        if _hi:
            time.sleep(random.uniform(_lo, _hi))
        if FAIL_RATE and random.random() < FAIL_RATE:
            raise InjectedFailure(f"injected failure in state {state}")
        _act(ctx, plan, state)
        ctx.set("trail", (ctx.get("trail") or []) + [state])
        ctx.output(ctx.get("trail"))
        outcome = "ok"
        return ctx
    finally:
        _record_end(exec_id, outcome)


register("chaos_main", StateFlow([{"name": name, "on_state": _work} for name in MAIN_STATES]))
register("chaos_child", StateFlow([{"name": name, "on_state": _work} for name in CHILD_STATES]))
