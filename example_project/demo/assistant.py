"""The "assistant" flow: a ToolAgent with a harmless tool and an approval-gated one.

``add`` runs as soon as the model asks; ``refund`` moves money, so the agent
escalates to the admin user first and the job blocks until they answer in
the admin (a rejection is handed back to the model, which tells the user).
"""

from __future__ import annotations

from typing import Any

from envoy_django.agents import ToolAgent
from example_project.demo.llm import provider

APPROVER = "admin"


def add(args: dict[str, Any], ctx: Any) -> int | float:
    return args["a"] + args["b"]


def refund(args: dict[str, Any], ctx: Any) -> str:
    """A stand-in for a payment provider call; it only ever runs after approval."""
    return f"order {args['order_id']} refunded in full"


assistant_flow = ToolAgent(
    provider,
    tools=[
        {"name": "add", "description": "Add two numbers.", "parameters": {"a": "number", "b": "number"},
         "handler": add},
        {"name": "refund", "description": "Refund an order in full. A person approves every refund.",
         "parameters": {"order_id": "integer"}, "handler": refund, "requires_approval": True},
    ],
    max_steps=10,
    approver=APPROVER,
    system_prompt="You are the demo shop's assistant. Use the tools; keep answers to one sentence.",
)
