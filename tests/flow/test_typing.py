"""A typo in a state or plugin dict is caught by a type checker, before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SNIPPET = '''
from envoy_django.flow import StateFlow


def handler(ctx):
    return ctx


StateFlow([{"name": "A", "on_state": handler, "router": {"next": None}}])
StateFlow([{"name": "A", "on_stat": handler}])
StateFlow([{"name": "A", "on_state": handler}], plugins=[{"name": "p", "onEnter": handler}])
'''


def test_mypy_flags_the_typos_and_only_them(tmp_path):
    flows = tmp_path / "flows.py"
    flows.write_text(SNIPPET)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(_empty_config(tmp_path)), "--follow-imports=silent",
         "--no-error-summary", str(flows)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    flagged = sorted(int(line.split(":")[1]) for line in result.stdout.splitlines() if ": error:" in line)
    assert flagged == [10, 11], result.stdout + result.stderr


def _empty_config(tmp_path: Path) -> Path:
    """Not the project's mypy settings (its Django plugin): the flow engine alone, as a user's editor sees it."""
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")
    return config
