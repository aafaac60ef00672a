"""Flows the benchmarks run; autodiscovered because ``bench`` is an installed app.

Every handler is a no-op apart from setting the output, so the numbers
measure envoy-django (claim, checkpoint, history row, dispatch), not work.
"""

from envoy_django import StateFlow, register


def _noop(ctx):
    ctx.output(ctx.step())
    return ctx


def _escalate(ctx):
    ctx.escalate("bench", "Go on?", [{"id": "ok", "type": "approve", "label": "Go on"}])
    return ctx


def _spawn(ctx):
    ctx.spawn("bench_child", ctx.input())
    return ctx


# Throughput: ten no-op states, ten committed transitions per job.
register("bench_ten", StateFlow([{"name": f"S{i}", "on_state": _noop} for i in range(10)]))
# Jobs per second, schedule-to-start latency and worker memory: one state.
register("bench_one", StateFlow([{"name": "Only", "on_state": _noop}]))
# reply_to_escalation() -> the job resuming in state Resume.
register("bench_escalate", StateFlow([
    {"name": "Ask", "on_state": _escalate},
    {"name": "Resume", "on_state": _noop},
]))
# A child ending -> its parent resuming in state Resume.
register("bench_parent", StateFlow([
    {"name": "Spawn", "on_state": _spawn},
    {"name": "Resume", "on_state": _noop},
]))
register("bench_child", StateFlow([{"name": "Child", "on_state": _noop}]))


# The flow names of the scale dataset (bench/scale.py), registered so that
# the admin's flow filter and flow-prefix search see them as a real
# project's flows.
SCALE_FLOWS = [
    "invoice.review", "invoice.pay", "support.triage", "support.reply", "lead.enrich",
    "lead.score", "doc.summarize", "doc.translate", "agent.research", "agent.code",
    "email.draft", "email.classify", "order.refund", "order.fraud", "report.weekly",
    "report.daily", "kb.index", "kb.answer", "hr.onboard", "hr.review",
]
for _name in SCALE_FLOWS:
    register(_name, StateFlow([{"name": f"S{i}", "on_state": _noop} for i in range(1, 10)]))
