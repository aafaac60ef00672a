"""The pure flow engine: states, routing, context, plugins, graph.

Imports nothing from Django, Redis, RQ or openai, so a flow can be defined,
run and tested anywhere (``flow.run()``); a test holds this line.
"""

from envoy_django.flow.context import Context
from envoy_django.flow.definition import Plugin, Route, Router, State
from envoy_django.flow.engine import StateFlow

__all__ = ["Context", "Plugin", "Route", "Router", "State", "StateFlow"]
