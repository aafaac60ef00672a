"""Agents built on the flow engine: ``ToolAgent`` is a StateFlow, so it runs in-process or as a durable job.

Imports neither Django nor ``openai``: the provider is whatever object is passed in.
"""

from envoy_django.agents.tool_agent import ToolAgent
from envoy_django.agents.tools import Tool, parameters_schema

__all__ = ["Tool", "ToolAgent", "parameters_schema"]
