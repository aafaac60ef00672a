"""Transaction-scoped lock helpers on PostgreSQL; no-ops on SQLite, which serializes writers anyway."""

from __future__ import annotations

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
