"""Every Python block in the README runs, in order, as a newcomer would paste it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from envoy_django import registry

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_readme_has_python_blocks():
    assert len(python_blocks()) >= 8


@pytest.mark.django_db(transaction=True)
def test_every_python_block_runs(monkeypatch, capsys):
    # The README registers its own flows; give it an empty registry.
    monkeypatch.setattr(registry, "_flows", {})
    namespace: dict = {"__name__": "readme"}
    for index, block in enumerate(python_blocks()):
        try:
            exec(compile(block, f"README.md block {index + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"README python block {index + 1} failed: {type(exc).__name__}: {exc}\n{block}")
