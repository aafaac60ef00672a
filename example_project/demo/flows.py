"""The README's first example, registered as a durable flow."""

from envoy_django import StateFlow, register


def hello(ctx):
    ctx.output("Hello!")
    return ctx


def middle(ctx):
    ctx.output(ctx.output() + " Middle!")
    return ctx


register("hello", StateFlow([
    {"name": "Start", "on_state": hello, "router": {"next": "Middle"}},
    {"name": "Middle", "on_state": middle, "router": {"next": None}},
]))
