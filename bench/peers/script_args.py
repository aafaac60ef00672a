"""What both peer scripts read from their command line and environment (run by the peers venv's python)."""

from __future__ import annotations

import argparse
import os


def jobs_and_dsn(description: str) -> tuple[argparse.Namespace, str]:
    """``--jobs`` and ``--warmup``, and the libpq DSN of the peer's own database (BENCH_PEER_DSN)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=5)
    return parser.parse_args(), os.environ["BENCH_PEER_DSN"]
