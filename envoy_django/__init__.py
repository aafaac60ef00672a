"""envoy-django: durable state-machine workflows for Django.

The public names are few and load lazily, so ``import envoy_django`` touches
no model and works before Django is set up (the flow engine is pure Python).
Every error is in ``envoy_django.exceptions``, all subclasses of ``EnvoyError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envoy_django import exceptions
from envoy_django.exceptions import EnvoyError
from envoy_django.flow import Context, StateFlow
from envoy_django.registry import register

if TYPE_CHECKING:
    from envoy_django import scheduler
    from envoy_django.agents import ToolAgent
    from envoy_django.llm import OpenAIProvider

__all__ = [
    "Context",
    "EnvoyError",
    "OpenAIProvider",
    "StateFlow",
    "ToolAgent",
    "exceptions",
    "register",
    "scheduler",
]

_LAZY = {
    "scheduler": ("envoy_django.scheduler", None),
    "ToolAgent": ("envoy_django.agents", "ToolAgent"),
    "OpenAIProvider": ("envoy_django.llm", "OpenAIProvider"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'envoy_django' has no attribute {name!r}")
    from importlib import import_module

    module_name, attr = _LAZY[name]
    module = import_module(module_name)
    return module if attr is None else getattr(module, attr)
