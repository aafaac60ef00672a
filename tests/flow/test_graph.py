"""flow.graph() and flow.to_mermaid(): a flow's shape as data and as text."""

from __future__ import annotations

from envoy_django import StateFlow


def noop(ctx):
    return ctx


def sample_flow():
    return StateFlow(
        [
            {"name": "Check", "on_enter": noop, "on_state": noop, "router": {
                "routes": {"Big": {"description": "more than ten"}, "Small": lambda o: o},
                "on_route": lambda ctx: "Big",
            }},
            {"name": "Big", "on_state": noop, "on_exit": noop, "router": {"next": "Report"}},
            {"name": "Small", "on_state": noop},
            {"name": "Report", "on_state": noop, "router": {"next": None}},
        ],
        max_steps=9,
    )


def test_graph_lists_start_states_and_edges():
    graph = sample_flow().graph()

    assert graph == {
        "start": "Check",
        "max_steps": 9,
        "states": [
            {"name": "Check", "handlers": ["on_enter", "on_state", "on_route"]},
            {"name": "Big", "handlers": ["on_state", "on_exit"]},
            {"name": "Small", "handlers": ["on_state"]},
            {"name": "Report", "handlers": ["on_state"]},
        ],
        "edges": [
            {"source": "Check", "target": "Big", "dynamic": True, "description": "more than ten"},
            {"source": "Check", "target": "Small", "dynamic": True, "description": None},
            {"source": "Big", "target": "Report", "dynamic": False, "description": None},
            # No router: the next state in list order.
            {"source": "Small", "target": "Report", "dynamic": False, "description": None},
            {"source": "Report", "target": None, "dynamic": False, "description": None},
        ],
    }


def test_graph_follows_start_state_and_ends_the_last_state_without_router():
    flow = StateFlow([{"name": "A", "on_state": noop}, {"name": "B", "on_state": noop}], start_state="B")

    graph = flow.graph()

    assert graph["start"] == "B"
    assert graph["edges"] == [
        {"source": "A", "target": "B", "dynamic": False, "description": None},
        {"source": "B", "target": None, "dynamic": False, "description": None},
    ]


def test_dynamic_router_without_routes_is_drawn_as_an_end():
    flow = StateFlow([{"name": "A", "on_state": noop, "router": {"on_route": lambda ctx: None}}])

    assert flow.graph()["edges"] == [{"source": "A", "target": None, "dynamic": True, "description": None}]


def test_mermaid_state_diagram():
    assert sample_flow().to_mermaid() == (
        "stateDiagram-v2\n"
        "    [*] --> Check\n"
        "    Check --> Big : more than ten\n"
        "    Check --> Small : dynamic\n"
        "    Big --> Report\n"
        "    Small --> Report\n"
        "    Report --> [*]\n"
    )


def test_mermaid_aliases_names_that_are_not_identifiers():
    flow = StateFlow([
        {"name": "Ask user", "on_state": noop, "router": {"next": 'Say "hi"'}},
        {"name": 'Say "hi"', "on_state": noop, "router": {
            "routes": {"Ask user": {"description": "again: loop\nback"}}, "on_route": lambda c: None}},
    ])

    assert flow.to_mermaid() == (
        "stateDiagram-v2\n"
        '    state "Ask user" as s0\n'
        "    state \"Say 'hi'\" as s1\n"
        "    [*] --> s0\n"
        "    s0 --> s1\n"
        "    s1 --> s0 : again  loop back\n"
    )


def test_mermaid_marks_the_start_and_every_end():
    flow = StateFlow(
        [{"name": "A", "on_state": noop, "router": {"next": None}},
         {"name": "B", "on_state": noop, "router": {"next": "A"}}],
        start_state="B",
    )

    lines = flow.to_mermaid().splitlines()

    assert lines[0] == "stateDiagram-v2"
    assert "    [*] --> B" in lines
    assert "    A --> [*]" in lines
    assert "    B --> A" in lines
