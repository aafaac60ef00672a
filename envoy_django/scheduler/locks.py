"""Transaction-scoped lock helpers on PostgreSQL; no-ops on SQLite, which serializes writers anyway."""

from __future__ import annotations

import hashlib

from django.db import connection


def try_advisory_lock(key: int) -> bool:
    """Take advisory lock ``key`` until the transaction ends; False if another transaction holds it."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
        return bool(cursor.fetchone()[0])


def lock_timeout(seconds: float) -> None:
    """Bound how long the rest of this transaction waits for any row lock (then OperationalError)."""
    if connection.vendor == "postgresql":  # SQLite has no row locks; its busy timeout bounds the wait
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{int(seconds * 1000)}ms"])


def advisory_lock(key: int) -> None:
    """Take advisory lock ``key`` until the transaction ends, waiting for it (within ``lock_timeout``)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def lock_key(*parts: str) -> int:
    """A stable advisory lock key (a signed 64-bit integer) for a name made of ``parts``."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
