"""graph_to_svg: well-formed, escaped, self-contained and deterministic pictures of flows."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from envoy_django.flow import StateFlow
from envoy_django.flow.svg import SVG_NS, graph_to_svg

NS = {"s": SVG_NS}
EVIL = "<script>alert(1)</script>"


def same(ctx):
    return ctx


def pick(ctx):
    return None


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{{{SVG_NS}}}svg"
    return root


def classes(el: ET.Element) -> set[str]:
    return set((el.get("class") or "").split())


def states(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-state"): g for g in root.iter(f"{{{SVG_NS}}}g") if "envoy-state" in classes(g)}


def edges(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{{{SVG_NS}}}g") if "envoy-edge" in classes(g)]


def graph(names, edge_list, start=None):
    return {
        "start": start or names[0],
        "states": [{"name": n, "handlers": ["on_state"]} for n in names],
        "edges": [{"source": s, "target": t, "dynamic": d, "description": desc} for s, t, d, desc in edge_list],
        "max_steps": 25,
    }


def real_flow() -> StateFlow:
    return StateFlow([
        {"name": "A", "on_state": same, "router": {"next": "Pick"}},
        {"name": "Pick", "on_state": same,
         "router": {"routes": {"B": {"description": "big"}, "C": {}}, "on_route": pick}},
        {"name": "B", "on_state": same, "router": {"next": "A"}},
        {"name": "C", "on_state": same, "router": {"next": None}},
    ])


def test_real_flow_states_edges_and_labels():
    g = real_flow().graph()
    root = parse(graph_to_svg(g))
    nodes = states(root)
    assert set(nodes) == {"A", "Pick", "B", "C"}
    for name, node in nodes.items():
        assert node.find("s:text", NS).text == name
        assert node.find("s:rect", NS) is not None
        assert node.find("s:title", NS).text.startswith(name)
    drawn = edges(root)
    assert len(drawn) == len(g["edges"]) == 5
    pairs = sorted((e.get("data-source"), e.get("data-target") or "") for e in drawn)
    assert pairs == sorted((e["source"], e["target"] or "") for e in g["edges"])
    labels = [t.text for t in root.iter(f"{{{SVG_NS}}}text") if "envoy-edge-label" in classes(t)]
    assert labels == ["big"]
    assert len(root.findall(".//s:g[@class='envoy-end']", NS)) == 1
    assert len(root.findall(".//s:g[@class='envoy-start']", NS)) == 1


def test_dynamic_edges_dashed_and_classed_static_not():
    root = parse(graph_to_svg(real_flow().graph()))
    for edge in edges(root):
        path = edge.find("s:path", NS)
        if edge.get("data-source") == "Pick":
            assert "envoy-edge--dynamic" in classes(edge)
            assert path.get("stroke-dasharray")
        else:
            assert "envoy-edge--dynamic" not in classes(edge)
            assert path.get("stroke-dasharray") is None
    loop = [e for e in edges(root) if e.get("data-source") == "B"]
    assert "envoy-edge--loop" in classes(loop[0])  # B -> A goes back up


def test_highlight_classes():
    svg = graph_to_svg(real_flow().graph(), visited=iter(["A", "Pick"]), current="B", failed="C")
    nodes = states(parse(svg))
    assert "envoy-state--visited" in classes(nodes["A"])
    assert "envoy-state--visited" in classes(nodes["Pick"])
    assert "envoy-state--current" in classes(nodes["B"])
    assert "envoy-state--failed" in classes(nodes["C"])
    assert "envoy-state--visited" not in classes(nodes["B"])
    unknown = states(parse(graph_to_svg(real_flow().graph(), visited=["nope"], current="gone")))
    assert all(classes(n) == {"envoy-state"} for n in unknown.values())


def test_every_label_is_escaped():
    quote = "say \"hi\" & 'bye' </text>"
    g = graph([EVIL, quote, "]]>"], [
        (EVIL, quote, True, EVIL),
        (EVIL, "]]>", True, quote),
        (quote, None, False, None),
        ("]]>", EVIL, False, None),
    ])
    svg = graph_to_svg(g, visited=[EVIL], current=quote, failed="]]>")
    assert "<script" not in svg.lower()
    assert "</text>\"" not in svg
    root = parse(svg)
    nodes = states(root)
    assert set(nodes) == {EVIL, quote, "]]>"}
    assert nodes[EVIL].find("s:text", NS).text == EVIL
    assert nodes[quote].find("s:text", NS).text == quote
    labels = {t.text for t in root.iter(f"{{{SVG_NS}}}text") if "envoy-edge-label" in classes(t)}
    assert labels == {EVIL, quote}
    assert len(edges(root)) == 4
    assert EVIL in root.get("aria-label")


def test_real_flow_with_hostile_names():
    flow = StateFlow([
        {"name": EVIL, "on_state": same, "router": {"routes": {'"q"': {"description": "<b>&"}}, "on_route": pick}},
        {"name": '"q"', "on_state": same, "router": {"next": None}},
    ])
    svg = graph_to_svg(flow.graph(), current=EVIL)
    assert "<script" not in svg and "<b>" not in svg
    assert set(states(parse(svg))) == {EVIL, '"q"'}


def test_control_characters_do_not_break_xml():
    svg = graph_to_svg(graph(["a\x00b\x1b", "tab\tnew\nline"], [("a\x00b\x1b", "tab\tnew\nline", False, "x\x07")]))
    nodes = states(parse(svg))
    assert len(nodes) == 2
    assert "tab\tnew\nline" in nodes  # whitespace in attributes survives as character references


def test_self_contained_no_urls_scripts_or_fonts():
    svg = graph_to_svg(real_flow().graph(), visited=["A"], current="B")
    assert re.findall(r"https?://[^\s\"'<>)]+", svg) == [SVG_NS]
    lowered = svg.lower()
    for banned in ("<script", "url(", "@import", "@font-face", "href", "<foreignobject", "javascript:"):
        assert banned not in lowered
    style = parse(svg).find("s:style", NS).text
    assert "currentColor" in style
    assert "var(--primary,#79aec8)" in style and "var(--error-fg,#ba2121)" in style
    assert "var(--body-fg," in style and "var(--selected-bg," in style


def test_accessibility_and_size():
    root = parse(graph_to_svg(real_flow().graph()))
    assert root.get("role") == "img"
    assert "4 states" in root.get("aria-label")
    assert root.find("s:title", NS).text == root.get("aria-label")
    x, y, w, h = (float(v) for v in root.get("viewBox").split())
    assert (float(root.get("width")), float(root.get("height"))) == (w, h)
    for rect in root.iter(f"{{{SVG_NS}}}rect"):
        rx, ry = float(rect.get("x")), float(rect.get("y"))
        assert x <= rx and rx + float(rect.get("width")) <= x + w
        assert y <= ry and ry + float(rect.get("height")) <= y + h
    for g in edges(root):
        assert g.find("s:title", NS).text


def test_deterministic():
    first = graph_to_svg(real_flow().graph(), visited=["A", "Pick"], current="B")
    second = graph_to_svg(real_flow().graph(), visited=["Pick", "A", "A"], current="B")
    assert first == second
    g = graph([f"s{i}" for i in range(12)], [(f"s{i}", f"s{(i * 5 + 1) % 12}", i % 2 == 0, None) for i in range(12)])
    assert graph_to_svg(g) == graph_to_svg(g)


def test_single_state():
    flow = StateFlow([{"name": "Only", "on_state": same}])
    root = parse(graph_to_svg(flow.graph(), current="Only"))
    assert set(states(root)) == {"Only"}
    assert len(edges(root)) == 1
    assert "envoy-edge--end" in classes(edges(root)[0])


def test_thirty_state_chain_gets_one_layer_each():
    names = [f"step {i}" for i in range(30)]
    flow = StateFlow([{"name": n, "on_state": same} for n in names])  # default router: next in order
    root = parse(graph_to_svg(flow.graph()))
    nodes = states(root)
    ys = [float(nodes[n].find("s:rect", NS).get("y")) for n in names]
    assert ys == sorted(ys) and len(set(ys)) == 30
    assert len(edges(root)) == 30


def test_cycles_self_loops_duplicates_and_unreachable():
    g = graph(["A", "B", "C", "Island", "Island2"], [
        ("A", "B", False, None),
        ("B", "C", True, "on"),
        ("B", "C", True, "on again"),  # duplicate pair
        ("B", "B", True, "retry"),  # self-loop
        ("C", "A", True, None),  # back edge
        ("C", None, True, None),
        ("Island", "Island2", False, None),  # both unreachable from A: same last layer
        ("Island2", "A", False, None),
    ])
    root = parse(graph_to_svg(g))
    nodes = states(root)
    assert len(edges(root)) == 8
    y = {n: float(nodes[n].find("s:rect", NS).get("y")) for n in nodes}
    assert y["A"] < y["B"] < y["C"] < y["Island"] == y["Island2"]
    loops = [e for e in edges(root) if "envoy-edge--loop" in classes(e)]
    assert sorted((e.get("data-source"), e.get("data-target")) for e in loops) == [
        ("B", "B"), ("C", "A"), ("Island2", "A")]
    dup = [e.find("s:path", NS).get("d") for e in edges(root)
           if (e.get("data-source"), e.get("data-target")) == ("B", "C")]
    assert len(dup) == 2 and dup[0] != dup[1]


def test_unknown_targets_and_missing_start_are_tolerated():
    g = {"start": "nowhere", "states": [{"name": "A", "handlers": []}],
         "edges": [{"source": "A", "target": "Ghost", "dynamic": False, "description": None}]}
    root = parse(graph_to_svg(g))
    assert set(states(root)) == {"A", "Ghost"}
    assert parse(graph_to_svg({"start": None, "states": [], "edges": []})) is not None


def test_module_does_not_import_django():
    """Loaded on its own (not via the envoy_django package), the module needs no Django."""
    import envoy_django.flow.svg as module

    code = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('envoy_svg', {module.__file__!r})\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules['envoy_svg'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "mod.graph_to_svg({'start': 'A', 'states': [{'name': 'A'}], 'edges': []})\n"
        "assert not [k for k in sys.modules if k == 'django' or k.startswith('django.')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


names_st = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=9, unique=True)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), names=names_st)
def test_random_graphs_are_well_formed(data, names):
    target = st.one_of(st.none(), st.sampled_from(names))
    edge_list = data.draw(st.lists(
        st.tuples(st.sampled_from(names), target, st.booleans(), st.one_of(st.none(), st.text(max_size=20))),
        max_size=20))
    visited = data.draw(st.lists(st.sampled_from(names), max_size=4))
    g = graph(names, edge_list, start=data.draw(st.sampled_from(names)))
    svg = graph_to_svg(g, visited=visited, current=names[-1])
    root = parse(svg)
    groups = [g for g in root.iter(f"{{{SVG_NS}}}g") if "envoy-state" in classes(g)]
    assert len(groups) == len(names)
    assert len(edges(root)) == len(edge_list)
    assert svg == graph_to_svg(g, visited=visited, current=names[-1])
