"""``manage.py envoy_graph FLOW [--format mermaid|svg]``."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
from django.core.management import CommandError, call_command

from envoy_django.flow.svg import SVG_NS


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("envoy_graph", *args, stdout=out)
    return out.getvalue()


def test_mermaid_is_the_default():
    assert run("family") == (
        "stateDiagram-v2\n"
        "    [*] --> Spawn\n"
        "    Spawn --> Escalate\n"
        "    Escalate --> Finish\n"
        "    Finish --> [*]\n"
    )


def test_svg_is_the_admin_picture():
    root = ET.fromstring(run("family", "--format", "svg"))
    assert root.tag == f"{{{SVG_NS}}}svg"
    states = {g.get("data-state") for g in root.iter(f"{{{SVG_NS}}}g") if g.get("data-state")}
    assert states == {"Spawn", "Escalate", "Finish"}


def test_unknown_flow_names_it_and_lists_the_registered_ones():
    with pytest.raises(CommandError) as error:
        run("nope")
    message = str(error.value)
    assert "'nope'" in message and "family" in message and "hello" in message


def test_unknown_format_is_refused():
    with pytest.raises(CommandError, match="invalid choice"):
        run("family", "--format", "png")
