"""``manage.py envoy_graph FLOW [--format mermaid|svg]``: print a registered flow's picture.

The same graph the admin's job page draws (``flow_graph``), as Mermaid text
for docs and pull requests, or as the standalone SVG.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from envoy_django.exceptions import UnknownFlowError
from envoy_django.flow.graph import graph_to_mermaid
from envoy_django.flow.svg import graph_to_svg
from envoy_django.registry import get_flow, registered


class Command(BaseCommand):
    help = "Print a registered flow as a Mermaid state diagram (default) or an SVG picture."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("flow", help="The name the flow is registered under.")
        parser.add_argument("--format", choices=("mermaid", "svg"), default="mermaid",
                            help="mermaid (default) or svg.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            flow = get_flow(options["flow"])
        except UnknownFlowError as exc:
            names = ", ".join(sorted(registered())) or "none"
            raise CommandError(f"no flow is registered as {options['flow']!r}; registered: {names}") from exc
        graph = flow.graph()
        text = graph_to_mermaid(graph) if options["format"] == "mermaid" else graph_to_svg(graph) + "\n"
        self.stdout.write(text, ending="")
