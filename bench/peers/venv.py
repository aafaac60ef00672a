"""The peers' own virtualenv, ``bench/.venv-peers``.

LangGraph and DBOS bring dependencies (SQLAlchemy, pydantic, langchain-core...)
that envoy-django must not be measured or tested with, so they live in a
separate venv built from ``bench/peers/requirements.txt`` with the interpreter
running the benchmark. pip runs again only when that file (or the interpreter)
changed: a marker file in the venv keeps the hash of what was installed.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent
REQUIREMENTS = PEERS_DIR / "requirements.txt"
VENV = PEERS_DIR.parent / ".venv-peers"
MARKER = VENV / ".requirements-sha256"


def venv_python() -> Path:
    return VENV / "bin" / "python"


def requirements_hash() -> str:
    """Hash of requirements.txt and of the interpreter version: either changing means reinstalling."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def _run(cmd: list[str], what: str) -> None:
    """Run ``cmd`` quietly; on failure raise with the tail of its output (pip is verbose on this mirror)."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")


def ensure_venv(log: Callable[[str], None]) -> Path:
    """Return the peers venv's python, creating the venv or reinstalling into it only when needed."""
    wanted = requirements_hash()
    python = venv_python()
    if python.exists() and MARKER.exists() and MARKER.read_text().strip() == wanted:
        return python
    if python.exists():
        log(f"peers: {REQUIREMENTS.name} or the interpreter changed, reinstalling {VENV}")
        # --clear: a venv of another Python version cannot be upgraded in place.
        _run([sys.executable, "-m", "venv", "--clear", str(VENV)], "creating the peers venv")
    else:
        log(f"peers: creating {VENV}")
        _run([sys.executable, "-m", "venv", str(VENV)], "creating the peers venv")
    MARKER.unlink(missing_ok=True)
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
         "pip install -r bench/peers/requirements.txt")
    MARKER.write_text(wanted + "\n")
    return python
