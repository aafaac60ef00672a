"""The flow engine imports no Django, RQ, Redis or openai (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "rq", "redis", "openai", "django_rq", "psycopg")

RUN_A_FLOW = """
flow = StateFlow([
    {"name": "A", "on_state": lambda ctx: (ctx.output("ok"), ctx)[1], "router": {"next": None}},
])
assert flow.run().output() == "ok"
flow.to_mermaid()
"""


@pytest.mark.parametrize(
    "imports",
    [
        "import envoy_django.flow\nfrom envoy_django.flow import StateFlow",
        "from envoy_django import StateFlow",
        "from envoy_django.flow import Context\nimport envoy_django.exceptions\n"
        "from envoy_django.flow import StateFlow",
    ],
    ids=["envoy_django.flow", "envoy_django", "context-and-exceptions"],
)
def test_importing_and_running_the_flow_engine_loads_no_service_library(imports):
    code = (
        "import json, sys\n"
        f"{imports}\n"
        f"{RUN_A_FLOW}\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=60)

    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout)
    assert "envoy_django.flow.engine" in modules  # the import really happened
    loaded = sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)
    assert loaded == []
