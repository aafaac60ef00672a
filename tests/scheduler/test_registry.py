"""Flow names: registration, flows.py autodiscovery, clear errors."""

import subprocess
import sys

import pytest

from envoy_django import StateFlow, register
from envoy_django.exceptions import FlowDefinitionError, UnknownFlowError
from envoy_django.registry import get_flow, registered, unregister


def _flow():
    return StateFlow([{"name": "Only", "on_state": lambda ctx: ctx}])


def test_flows_py_of_installed_apps_is_autodiscovered():
    assert {"hello", "family", "child"} <= set(registered())


def test_register_refuses_a_different_flow_under_a_taken_name():
    flow = _flow()
    register("taken", flow)
    try:
        register("taken", flow)  # the same flow again is fine (modules imported twice)
        with pytest.raises(ValueError, match="'taken'.*replace=True"):
            register("taken", _flow())
        replacement = _flow()
        register("taken", replacement, replace=True)
        assert get_flow("taken") is replacement
    finally:
        unregister("taken")


def test_unknown_flow_lists_the_registered_ones():
    with pytest.raises(UnknownFlowError, match="'nope'.*registered: .*child"):
        get_flow("nope")


def test_register_needs_a_stateflow():
    with pytest.raises(FlowDefinitionError, match="needs a StateFlow"):
        register("x", object())


def test_using_flows_before_django_is_set_up_says_so():
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'\n"
        "from envoy_django.registry import get_flow\n"
        "try:\n    get_flow('hello')\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("NotReadyError") and "django.setup()" in out
