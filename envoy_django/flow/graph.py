"""A flow's shape as data (states and edges) and as Mermaid text.

The admin's SVG picture and ``manage.py envoy_graph`` both start from
``flow_graph()``, so every picture of a flow agrees.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envoy_django.flow.engine import StateFlow

_PLAIN_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def flow_graph(flow: StateFlow) -> dict[str, Any]:
    """``{"start", "states": [{"name", "handlers"}], "edges": [{"source", "target", "dynamic", "description"}]}``.

    An edge whose ``target`` is None ends the flow. Dynamic routers may also
    end the flow by returning None; that edge is not drawn.
    """
    order = list(flow.states)
    states = []
    edges = []
    for index, name in enumerate(order):
        state = flow.states[name]
        handlers = [h for h in ("on_enter", "on_state", "on_exit") if getattr(state, h)]
        router = state.router
        if router.kind == "dynamic":
            handlers.append("on_route")
            for route in router.routes.values():
                edges.append({"source": name, "target": route.target, "dynamic": True,
                              "description": route.description})
            if not router.routes:
                edges.append({"source": name, "target": None, "dynamic": True, "description": None})
        else:
            if router.kind == "static":
                target = router.next
            else:
                target = order[index + 1] if index + 1 < len(order) else None
            edges.append({"source": name, "target": target, "dynamic": False, "description": None})
        states.append({"name": name, "handlers": handlers})
    return {"start": flow.start_state, "states": states, "edges": edges, "max_steps": flow.max_steps}


def graph_to_mermaid(graph: dict[str, Any]) -> str:
    """A Mermaid ``stateDiagram-v2``; names that are not identifiers get aliases."""
    ids = {}
    lines = ["stateDiagram-v2"]
    for index, state in enumerate(graph["states"]):
        name = state["name"]
        if _PLAIN_ID.match(name):
            ids[name] = name
        else:
            ids[name] = f"s{index}"
            label = name.replace('"', "'")
            lines.append(f'    state "{label}" as s{index}')
    lines.append(f"    [*] --> {ids[graph['start']]}")
    for edge in graph["edges"]:
        target = "[*]" if edge["target"] is None else ids[edge["target"]]
        label = edge["description"] or ("dynamic" if edge["dynamic"] else "")
        label = label.replace("\n", " ").replace(":", " ")
        lines.append(f"    {ids[edge['source']]} --> {target}" + (f" : {label}" if label else ""))
    return "\n".join(lines) + "\n"
