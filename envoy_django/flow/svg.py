"""A flow graph (the dict from ``flow_graph()``) drawn as an inline SVG string.

Drawn server-side with the standard library only, so the admin can embed the
picture without JavaScript, fonts or stylesheets fetched from anywhere, and
so the same graph always gives the same string (cacheable, testable). Colours
come from the admin's CSS variables with light-mode fallbacks, so the picture
follows the admin's light/dark theme and still looks right as a bare file.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

SVG_NS = "http://www.w3.org/2000/svg"

_ROW = 80.0  # vertical pitch between layers: node height plus room for labels
_GAP = 36.0  # horizontal gap between nodes in a layer
_STATE_H = 34.0
_PAD = 14.0
_MAX_LABEL = 40  # longer names are clipped on the node; <title> keeps them whole
_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_STYLE_VARS = (
    ".envoy-flow{color:var(--body-fg,#333);max-width:100%;height:auto;"
    "font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}"
    ".envoy-state rect{fill:var(--body-bg,#fff);stroke:var(--body-quiet-color,#666);stroke-width:1.5px}"
    ".envoy-state text{fill:var(--body-fg,#333);font-size:13px}"
    ".envoy-state--visited rect{fill:var(--selected-bg,#e4e4e4);stroke:var(--primary,#79aec8)}"
    ".envoy-state--current rect{fill:var(--primary,#79aec8);stroke:var(--secondary,#417690);stroke-width:3px}"
    ".envoy-state--current text{fill:var(--primary-fg,#fff);font-weight:bold}"
    ".envoy-state--failed rect{fill:var(--message-error-bg,#ffefef);stroke:var(--error-fg,#ba2121);stroke-width:3px}"
    ".envoy-state--failed text{fill:var(--error-fg,#ba2121);font-weight:bold}"
    ".envoy-edge path,.envoy-start path{fill:none;stroke:currentColor;stroke-width:1.4px;opacity:.8}"
    ".envoy-edge--dynamic path{stroke-dasharray:5 4}"
    ".envoy-arrow,.envoy-start circle,.envoy-end-dot{fill:currentColor}"
    ".envoy-end-ring{fill:none;stroke:currentColor;stroke-width:1.5px}"
    ".envoy-edge-label{font-size:11px;fill:var(--body-quiet-color,#666);paint-order:stroke;"
    "stroke:var(--body-bg,#fff);stroke-width:3px;stroke-linejoin:round}"
)


def _with_fallbacks(css: str) -> str:
    """Precede each var() declaration by its plain fallback, for renderers without CSS variables."""
    def both(match: re.Match[str]) -> str:
        plain = re.sub(r"var\(--[\w-]+,([^()]*)\)", r"\1", match[2])
        return f"{match[1]}:{plain};{match[0]}"
    return re.sub(r"([\w-]+):([^;{}]*var\([^;{}]*)", both, css)


_STYLE = _with_fallbacks(_STYLE_VARS)

Key = tuple[str, str]  # ("state", name) | ("start", "") | ("end", source state)
Point = tuple[float, float]


@dataclass
class _Node:
    kind: str
    row: int
    order: int  # declaration order, the tie-breaker that keeps layout deterministic
    w: float
    h: float
    x: float = 0.0
    y: float = 0.0
    room: float = 0.0  # extra space kept free on the right, for self-loops


def _esc(text: object) -> str:
    """Escape for XML text and attributes (whitespace as references, which attributes keep)."""
    text = html.escape(_BAD_XML.sub("\ufffd", str(text)), quote=True)
    return text.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")


def _num(value: float) -> str:
    text = f"{value:.1f}"
    text = text[:-2] if text.endswith(".0") else text
    return "0" if text == "-0" else text


def _text_width(text: str, size: float) -> float:
    """No font metrics server-side: estimate from character count (wide glyphs count double)."""
    units = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return units * size * 0.6


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _layers(names: list[str], start: str | None, succ: dict[str, list[str]]) -> dict[str, int]:
    """Longest-path layers from ``start``, ignoring the DFS back edges that close loops.

    States unreachable from the start share one layer after all the others.
    """
    layer: dict[str, int] = {}
    if start is not None:
        post: list[str] = []
        back: set[tuple[str, str]] = set()
        on_stack, seen = {start}, {start}
        stack = [(start, iter(succ[start]))]
        while stack:  # iterative DFS, so long chains cannot hit the recursion limit
            node, targets = stack[-1]
            for target in targets:
                if target in on_stack:
                    back.add((node, target))
                elif target not in seen:
                    seen.add(target)
                    on_stack.add(target)
                    stack.append((target, iter(succ[target])))
                    break
            else:
                stack.pop()
                on_stack.discard(node)
                post.append(node)
        layer = {name: 0 for name in post}
        for node in reversed(post):  # reverse post-order: every non-back edge points forward
            for target in succ[node]:
                if (node, target) not in back:
                    layer[target] = max(layer[target], layer[node] + 1)
    last = max(layer.values(), default=-1) + 1
    return {name: layer.get(name, last) for name in names}


def _place(nodes: dict[Key, _Node], preds: dict[Key, list[Key]]) -> dict[int, list[Key]]:
    """Order each layer by the mean x of already placed predecessors, then centre it."""
    rows: dict[int, list[Key]] = {}
    for key in sorted(nodes, key=lambda k: (nodes[k].row, nodes[k].order, k)):
        rows.setdefault(nodes[key].row, []).append(key)
    for row, keys in sorted(rows.items()):
        def rank(key: Key, row: int = row) -> tuple[int, float, int]:
            xs = [nodes[p].x for p in preds.get(key, []) if nodes[p].row < row]
            return (0, sum(xs) / len(xs), nodes[key].order) if xs else (1, 0.0, nodes[key].order)
        keys.sort(key=rank)
        x = -(sum(nodes[k].w + nodes[k].room for k in keys) + _GAP * (len(keys) - 1)) / 2
        for key in keys:
            nodes[key].x, nodes[key].y = x + nodes[key].w / 2, row * _ROW
            x += nodes[key].w + nodes[key].room + _GAP
    return rows


def _arrow(tip: Point, towards: Point) -> str:
    dx, dy = tip[0] - towards[0], tip[1] - towards[1]
    length = math.hypot(dx, dy) or 1.0
    ux, uy = (dx / length, dy / length) if (dx or dy) else (0.0, 1.0)
    bx, by = tip[0] - ux * 8, tip[1] - uy * 8
    pts = [tip, (bx - uy * 4.5, by + ux * 4.5), (bx + uy * 4.5, by - ux * 4.5)]
    return " ".join(f"{_num(x)},{_num(y)}" for x, y in pts)


Link = tuple[Key, Key, dict[str, Any] | None]  # None marks the start arrow
Box = tuple[float, float, float, float]


@dataclass
class _Layout:
    """Where everything goes: the nodes by key, the links between them, the keys of each layer."""

    names: list[str]
    start: str | None
    nodes: dict[Key, _Node]
    links: list[Link]
    rows: dict[int, list[Key]]


def graph_to_svg(
    graph: dict[str, Any],
    *,
    visited: Iterable[str] = (),
    current: str | None = None,
    failed: str | None = None,
) -> str:
    """Draw ``graph`` as a standalone ``<svg>`` element (UTF-8 text, no XML declaration).

    ``visited`` states get a tinted fill, ``current`` a strong fill and outline,
    ``failed`` red. Every name and description is XML-escaped, since flows may
    be named by anyone who can define one.
    """
    layout = _lay_out(graph)
    boxes: list[Box] = [(n.x - n.w / 2, n.y - n.h / 2, n.x + n.w / 2, n.y + n.h / 2) for n in layout.nodes.values()]
    start_arrow, edges = _draw_links(layout, boxes)
    states = _draw_nodes(layout, {str(v) for v in visited}, current, failed)
    x0 = min((b[0] for b in boxes), default=0.0) - _PAD
    y0 = min((b[1] for b in boxes), default=0.0) - _PAD
    width = math.ceil(max((b[2] for b in boxes), default=0.0) + _PAD - x0)
    height = math.ceil(max((b[3] for b in boxes), default=0.0) + _PAD - y0)
    start = layout.start
    summary = f"Flow graph: {len(layout.names)} states" + (f", starting at {start}" if start is not None else "")
    return (f'<svg xmlns="{SVG_NS}" class="envoy-flow" role="img" aria-label="{_esc(summary)}" '
            f'width="{width}" height="{height}" viewBox="{_num(x0)} {_num(y0)} {width} {height}">'
            f"<title>{_esc(summary)}</title><style>{_STYLE}</style>"
            + "".join(edges) + "".join(start_arrow + states) + "</svg>")


def _lay_out(graph: dict[str, Any]) -> _Layout:
    """Nodes for the start, each state and each end; layers by longest path; each layer ordered and centred."""
    names = [str(s["name"]) for s in graph.get("states", [])]
    edges = list(graph.get("edges", []))
    for edge in edges:  # a hand-made graph may name states it does not list
        for name in (edge["source"], edge["target"]):
            if name is not None and str(name) not in names:
                names.append(str(name))
    start = str(graph["start"]) if graph.get("start") in names else (names[0] if names else None)
    index = {name: i for i, name in enumerate(names)}
    succ: dict[str, list[str]] = {name: [] for name in names}
    for edge in (e for e in edges if e["target"] is not None):
        succ[str(edge["source"])].append(str(edge["target"]))
    layer = _layers(names, start, succ)

    nodes: dict[Key, _Node] = {}
    links: list[Link] = []
    if start is not None:
        nodes[("start", "")] = _Node("start", 0, -1, 14.0, 14.0)
        links.append((("start", ""), ("state", start), None))
    for name in names:
        width = max(64.0, _text_width(_clip(name, _MAX_LABEL), 13) + 26)
        nodes[("state", name)] = _Node("state", layer[name] + 1, index[name], width, _STATE_H)
    for edge in edges:
        source = str(edge["source"])
        if edge["target"] is None:
            nodes.setdefault(("end", source), _Node("end", layer[source] + 2, index[source], 20.0, 20.0))
            links.append((("state", source), ("end", source), edge))
        else:
            links.append((("state", source), ("state", str(edge["target"])), edge))
    preds: dict[Key, list[Key]] = {}
    loops: dict[Key, int] = {}
    for src, dst, link_edge in links:
        preds.setdefault(dst, []).append(src)
        if src == dst and link_edge is not None:  # the k-th self-loop reaches 0.75 * (30 + 8k) out
            loops[src] = loops.get(src, 0) + 1
            label = _clip(str(link_edge.get("description") or ""), 32)
            need = 0.75 * (30 + 8 * loops[src]) + 6 + (_text_width(label, 11) + 5 if label else 0)
            nodes[src].room = max(nodes[src].room, need)
    return _Layout(names, start, nodes, links, _place(nodes, preds))


def _link_kinds(layout: _Layout) -> list[str]:
    """How each link is drawn: ``self`` (a loop), ``same`` (within a layer), ``down``, or ``side`` (in a lane)."""
    nodes, rows = layout.nodes, layout.rows

    def blocked(src: _Node, dst: _Node) -> bool:
        """A forward edge skipping layers would cut through a node: send it round the side."""
        lo, hi = min(src.x, dst.x) - 8, max(src.x, dst.x) + 8
        return any(lo < n.x + n.w / 2 and n.x - n.w / 2 < hi
                   for r in range(src.row + 1, dst.row) for n in (nodes[k] for k in rows[r]))

    kinds = []
    for s, d, _ in layout.links:
        src, dst = nodes[s], nodes[d]
        kinds.append("self" if s == d else "same" if src.row == dst.row else
                     "down" if dst.row > src.row and not blocked(src, dst) else "side")
    return kinds


def _draw_links(layout: _Layout, boxes: list[Box]) -> tuple[list[str], list[str]]:
    """(the start arrow, the edges) as SVG; each edge's and label's box is added to ``boxes``."""
    nodes, links, rows = layout.nodes, layout.links, layout.rows
    kinds = _link_kinds(layout)
    ports_out: dict[Key, list[int]] = {}
    ports_in: dict[Key, list[int]] = {}
    for i in (i for i, kind in enumerate(kinds) if kind == "down"):
        ports_out.setdefault(links[i][0], []).append(i)
        ports_in.setdefault(links[i][1], []).append(i)
    def far_x(i: int, outgoing: bool) -> tuple[float, int]:
        src, dst, _ = links[i]
        return (nodes[dst if outgoing else src].x, i)

    for group, outgoing in ((ports_out, True), (ports_in, False)):  # fan ports out left to right
        for ids in group.values():
            ids.sort(key=partial(far_x, outgoing=outgoing))

    def port(key: Key, group: dict[Key, list[int]], i: int) -> float:
        n, ids = nodes[key], group[key]
        return n.x - n.w / 2 + n.w * (ids.index(i) + 1) / (len(ids) + 1)

    counters: dict[Any, int] = {"same": 0}
    lanes: dict[str, list[tuple[int, int, int]]] = {"left": [], "right": []}
    start_arrow: list[str] = []
    edge_parts: list[str] = []
    for i, (s, d, edge) in enumerate(links):
        src, dst = nodes[s], nodes[d]
        kind = kinds[i]
        anchor = "middle"
        if kind == "down":
            p0 = (port(s, ports_out, i), src.y + src.h / 2)
            p3 = (port(d, ports_in, i), dst.y - dst.h / 2)
            bend = (p3[1] - p0[1]) / 2
            c1, c2 = (p0[0], p0[1] + bend), (p3[0], p3[1] - bend)
        elif kind == "self":
            k = counters[s] = counters.get(s, 0) + 1
            r, reach = src.x + src.w / 2, 30.0 + 8 * k
            p0, p3 = (r, src.y - 7), (r, src.y + 7)
            c1, c2 = (r + reach, src.y - 26), (r + reach, src.y + 26)
            anchor = "start"
        elif kind == "same":
            k = counters["same"] = counters["same"] + 1
            dip = (28.0 + 10 * k) * 4 / 3
            p0, p3 = (src.x + 4 * k, src.y + src.h / 2), (dst.x - 4 * k, dst.y + dst.h / 2)
            c1, c2 = (p0[0], p0[1] + dip), (p3[0], p3[1] + dip)
        else:  # loops back up, or a long forward edge: a lane beside the layers it spans
            side = "right" if (src.x + dst.x) / 2 >= 0 else "left"
            sign = 1.0 if side == "right" else -1.0
            lo, hi = min(src.row, dst.row), max(src.row, dst.row)
            k = 1  # the innermost lane not already used beside any of these layers
            while any(k == used and lo <= b and a <= hi for a, b, used in lanes[side]):
                k += 1
            lanes[side].append((lo, hi, k))
            span = [nodes[key] for r in range(lo, hi + 1) for key in rows[r]]
            edge_x = max(sign * (n.x + sign * n.w / 2) for n in span) * sign
            lane = edge_x + sign * (22 + 14 * k)
            p0 = (src.x + sign * src.w / 2, src.y + 5)
            p3 = (dst.x + sign * dst.w / 2, dst.y - 5)
            ctrl = (8 * lane - p0[0] - p3[0]) / 6  # puts the curve's midpoint on the lane
            c1, c2 = (ctrl, p0[1]), (ctrl, p3[1])
            anchor = "start" if side == "right" else "end"
        mid = ((p0[0] + 3 * c1[0] + 3 * c2[0] + p3[0]) / 8, (p0[1] + 3 * c1[1] + 3 * c2[1] + p3[1]) / 8)
        boxes.append((min(p0[0], p3[0], mid[0]), min(p0[1], p3[1], mid[1]),
                      max(p0[0], p3[0], mid[0]), max(p0[1], p3[1], mid[1])))
        path = (f'<path d="M{_num(p0[0])},{_num(p0[1])} C{_num(c1[0])},{_num(c1[1])} '
                f'{_num(c2[0])},{_num(c2[1])} {_num(p3[0])},{_num(p3[1])}" fill="none"'
                + (' stroke-dasharray="5 4"' if edge and edge.get("dynamic") else "") + "/>"
                f'<polygon class="envoy-arrow" points="{_arrow(p3, c2)}"/>')
        if edge is None:
            start_arrow.append(f'<g class="envoy-start"><title>start</title>'
                               f'<circle cx="{_num(src.x)}" cy="{_num(src.y)}" r="7"/>{path}</g>')
            continue
        loop = kind == "self" or dst.row < src.row
        edge_parts.append(_edge_group(edge, path, mid, anchor, loop, boxes))
    return start_arrow, edge_parts


def _edge_group(edge: dict[str, Any], path: str, mid: Point, anchor: str, loop: bool, boxes: list[Box]) -> str:
    """One edge's ``<g>``: its path, its title and its label (whose box is added to ``boxes``)."""
    classes = ["envoy-edge"]
    classes += ["envoy-edge--dynamic"] if edge.get("dynamic") else []
    classes += ["envoy-edge--end"] if edge["target"] is None else []
    classes += ["envoy-edge--loop"] if loop else []
    target = "end" if edge["target"] is None else str(edge["target"])
    description = str(edge.get("description") or "")
    title = f"{edge['source']} \u2192 {target}" + (" (dynamic)" if edge.get("dynamic") else "")
    title += f": {description}" if description else ""
    label = ""
    if description:
        text = _clip(description, 32)
        width = _text_width(text, 11)
        dx, share = {"start": (5.0, 0.0), "end": (-5.0, 1.0), "middle": (0.0, 0.5)}[anchor]
        lx = mid[0] + dx
        x0 = lx - width * share
        boxes.append((x0, mid[1] - 8, x0 + width, mid[1] + 8))
        label = (f'<text class="envoy-edge-label" x="{_num(lx)}" y="{_num(mid[1])}" dy=".35em" '
                 f'text-anchor="{anchor}">{_esc(text)}</text>')
    data = f' data-source="{_esc(edge["source"])}"'
    data += "" if edge["target"] is None else f' data-target="{_esc(edge["target"])}"'
    return f'<g class="{" ".join(classes)}"{data}><title>{_esc(title)}</title>{path}{label}</g>'


def _draw_nodes(layout: _Layout, visited: set[str], current: str | None, failed: str | None) -> list[str]:
    """The end markers and the states, marked visited, current or failed."""
    body = []
    for key, n in layout.nodes.items():
        if n.kind == "end":
            body.append(f'<g class="envoy-end"><title>end</title>'
                        f'<circle class="envoy-end-ring" cx="{_num(n.x)}" cy="{_num(n.y)}" r="9"/>'
                        f'<circle class="envoy-end-dot" cx="{_num(n.x)}" cy="{_num(n.y)}" r="5"/></g>')
        elif n.kind == "state":
            name = key[1]
            marks = [m for m, on in (("visited", name in visited), ("current", name == current),
                                     ("failed", name == failed)) if on]
            classes = " ".join(["envoy-state"] + [f"envoy-state--{m}" for m in marks])
            title = name + (f" ({', '.join(marks)})" if marks else "")
            body.append(f'<g class="{classes}" data-state="{_esc(name)}"><title>{_esc(title)}</title>'
                        f'<rect x="{_num(n.x - n.w / 2)}" y="{_num(n.y - n.h / 2)}" width="{_num(n.w)}" '
                        f'height="{_num(n.h)}" rx="6"/>'
                        f'<text x="{_num(n.x)}" y="{_num(n.y)}" dy=".35em" text-anchor="middle">'
                        f"{_esc(_clip(name, _MAX_LABEL))}</text></g>")
    return body
