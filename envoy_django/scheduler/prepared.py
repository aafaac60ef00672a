"""The engine's own statements, prepared once per connection on PostgreSQL.

Django binds values on the client and prepares nothing unless told to (so
that a transaction-pooling PgBouncer keeps working): PostgreSQL then parses
and plans every claim and checkpoint again, though the engine sends the
same few statements thousands of times. So the engine runs them, and only
them, on a cursor that binds on the server and prepares each statement the
second time a connection sends it (one sent once is not worth the round
trip preparing costs). The site's own queries keep Django's cursor and its
settings; nothing else on the connection is prepared.

``ENVOY["PREPARED_STATEMENTS"]``: None (the default) prepares unless the
database's settings say a transaction pooler stands in between
(``DISABLE_SERVER_SIDE_CURSORS``, which Django's documentation asks of such
sites); True or False decides. A PgBouncer 1.21 or newer in transaction
mode with ``max_prepared_statements`` set handles prepared statements, and
then True is safe there too. Where a pooler loses them anyway, the process
logs a WARNING and stops preparing: a statement that ran on its own is sent
again unprepared; one inside a transaction fails it, as a lost connection
would, and the caller's next try runs unprepared.
"""

from __future__ import annotations

import logging
import sys
from functools import cache
from typing import Any
from weakref import WeakKeyDictionary

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from envoy_django.conf import envoy_settings

log = logging.getLogger("envoy_django.prepared")

# psycopg prepares a statement once it ran this many times, or when asked to
# (``prepare=True``): only the engine's cursor asks, so only its statements are.
ONLY_WHEN_ASKED = sys.maxsize

# The statements each psycopg connection has sent. A statement is prepared the
# second time a connection sends it: preparing costs a round trip of its own,
# which a connection that lives for one request (Django's CONN_MAX_AGE = 0)
# and sends its INSERT once would pay for nothing.
_sent: WeakKeyDictionary[Any, set[str]] = WeakKeyDictionary()

# Set when the database lost a statement this process had prepared, or found
# one it had not: a pooler hands the connection's transactions to other
# sessions. From then on this process prepares nothing.
_unkept = False


def cursor() -> CursorWrapper:
    """A cursor on the default connection for the engine's statements: prepared where ``enabled``.

    It is Django's own cursor wrapper (execute wrappers and the debug query
    log see the statements) around a server-binding psycopg cursor.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    wrapper = connection.cursor()  # connects, checks health, wraps: as for any query
    if enabled(connection):
        raw = connection.connection
        if raw.prepare_threshold is None:  # Django's default: psycopg prepares nothing, asked or not
            raw.prepare_threshold = ONLY_WHEN_ASKED
        wrapper.cursor.close()
        wrapper.cursor = _preparing_cursor_class()(raw)
        _follow_timezone(connection, wrapper.cursor)
    return wrapper


def enabled(connection: BaseDatabaseWrapper) -> bool:
    """Whether the engine prepares its statements on ``connection`` (see the module's docstring)."""
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:
        return False
    setting = envoy_settings.PREPARED_STATEMENTS
    if setting is None:
        return not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS", False)
    return bool(setting)


@cache
def _preparing_cursor_class() -> type:
    """Django's server-binding psycopg cursor, asking psycopg to prepare what its connection sends again."""
    from django.db.backends.postgresql.base import ServerBindingCursor
    from psycopg import errors
    from psycopg.pq import TransactionStatus

    class PreparingCursor(ServerBindingCursor):
        def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None,
                    binary: bool | None = None) -> Any:
            sent = _sent.setdefault(self.connection, set())  # type: ignore[attr-defined]
            again = query in sent and not _unkept
            sent.add(query)
            try:
                return super().execute(query, params, prepare=again, binary=binary)  # type: ignore[misc]
            except (errors.InvalidSqlStatementName, errors.DuplicatePreparedStatement) as exc:
                _stop_preparing(exc)
                if self.connection.info.transaction_status != TransactionStatus.IDLE:  # type: ignore[attr-defined]
                    raise  # the failed statement ended its transaction: the caller's atomic() rolls it back
                # The statement ran on its own and changed nothing: send it again, unprepared.
                return super().execute(query, params, prepare=False, binary=binary)  # type: ignore[misc]
            finally:  # a statement that failed is logged too
                self._query = _LoggedQuery(query, params)

    return PreparingCursor


def _stop_preparing(exc: Exception) -> None:
    global _unkept
    if not _unkept:
        log.warning("the database did not keep the engine's prepared statements (%s): a transaction-pooling "
                    "PgBouncer? This process prepares nothing more; set ENVOY['PREPARED_STATEMENTS'] = False, "
                    "or DISABLE_SERVER_SIDE_CURSORS in DATABASES as Django asks of such sites", exc)
    _unkept = True


class _LoggedQuery:
    """What Django's query log reads of a cursor's last statement (``cursor._query.query``).

    psycopg keeps no text of a prepared statement's run; the text with its
    values is composed here only when read, as Django composes a
    server-bound statement's (``DEBUG``, ``CaptureQueriesContext``).
    """

    __slots__ = ("sql", "params")

    def __init__(self, sql: str, params: Any) -> None:
        self.sql, self.params = sql, params

    @property
    def query(self) -> bytes:
        ops: Any = connections[DEFAULT_DB_ALIAS].ops  # PostgreSQL's, which compose_sql is on
        return ops.compose_sql(self.sql, self.params).encode()


def _follow_timezone(connection: Any, raw_cursor: Any) -> None:
    """Read timestamps in the connection's time zone, as Django's ``create_cursor`` sets up its cursors."""
    from django.db.backends.postgresql.base import TIMESTAMPTZ_OID
    from django.db.backends.postgresql.psycopg_any import register_tzloader
    from psycopg.pq import Format

    if connection.timezone != connection.connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT).timezone:
        register_tzloader(connection.timezone, raw_cursor)
