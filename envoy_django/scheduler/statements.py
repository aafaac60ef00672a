"""The hot path's SQL on PostgreSQL, built from the models so it stays in step with them.

A worker's ordinary transition is one fenced UPDATE of its job row and one
Step INSERT; its claim, a row lock and an UPDATE. Through the ORM each is
four round trips (BEGIN, two statements, COMMIT); as one statement (a CTE)
it is one, and PostgreSQL commits it as its own transaction when no
transaction is open (``aftercommit.atomic(one_statement=True)``): the same
rows, the same fence, the same synchronous commit.

Values pass through each field's ``get_db_prep_save``, as the ORM passes
them, so JSON, dates and defaults are stored exactly as ``save()`` would.
Rows read back become model instances through each field's converters, as
the ORM builds them (``from_row``): compiling a queryset costs more than
the locked read it sends. Only transitions.py and waits.py run these
statements; this module only writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Field, Model
from django.db.models.expressions import DatabaseDefault

from envoy_django.models import Escalation, Job, JobStatus, SlotStatus, Step, Wait, WaitStatus
from envoy_django.scheduler import prepared

M = TypeVar("M", bound=Model)


@cache
def _fields(model: type[Model]) -> dict[str, tuple[str, Field]]:
    """Field name -> (quoted column, field), for every concrete field of ``model``."""
    qn = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return {field.name: (qn(str(field.column)), field) for field in model._meta.concrete_fields}


def _prepared(model: type[Model], values: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """Column names (quoted) and database values of ``values`` (field name -> value) of ``model``.

    A foreign key's value may be the related instance, as ``update()`` takes it.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    fields = _fields(model)
    columns, params = [], []
    for name, value in values.items():
        column, field = fields[name]
        if field.is_relation and isinstance(value, Model):
            value = value.pk
        columns.append(column)
        params.append(field.get_db_prep_save(value, connection))
    return columns, params


# --- reading rows back -----------------------------------------------------------


def select_list(model: type[Model], alias: str) -> str:
    """Every concrete column of ``model`` under table alias ``alias``, in ``from_row``'s order."""
    return ", ".join(f"{alias}.{column}" for column, _ in _fields(model).values())


@cache
def _loader(model: type[Model], name: str) -> tuple[Any, list[Callable[..., Any]]]:
    """(column expression, converters) of ``model``'s field ``name``: what the ORM applies to a value read."""
    connection = connections[DEFAULT_DB_ALIAS]
    column = _fields(model)[name][1].get_col(model._meta.db_table)
    return column, connection.ops.get_db_converters(column) + column.get_db_converters(connection)


def loaded(model: type[Model], name: str, value: Any) -> Any:
    """A value of ``model``'s field ``name`` as read from a row, as a queryset would give it."""
    column, converters = _loader(model, name)
    connection = connections[DEFAULT_DB_ALIAS]
    for convert in converters:
        value = convert(value, column, connection)
    return value


@cache
def _attnames(model: type[Model]) -> list[tuple[str, str]]:
    """(field name, attname) of each concrete column of ``model``, in ``select_list``'s order."""
    return [(field.name, field.attname) for _, field in _fields(model).values()]


def from_row(model: type[M], row: Sequence[Any], start: int = 0) -> M:
    """The instance of ``model`` in ``row[start:]`` (columns of ``select_list``), as a queryset would build it."""
    names = _attnames(model)
    values = [loaded(model, name, value)
              for (name, _), value in zip(names, row[start:start + len(names)], strict=True)]
    return model.from_db(DEFAULT_DB_ALIAS, [attname for _, attname in names], values)


def _for_update() -> str:
    """`` FOR UPDATE`` where the database has row locks (SQLite serializes writers instead)."""
    connection = connections[DEFAULT_DB_ALIAS]
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def fetch_one(statement: tuple[str, list[Any]]) -> tuple[Any, ...] | None:
    """Run ``statement`` (sql, params) on the default connection, prepared; the first row it reads, or None."""
    with prepared.cursor() as cursor:
        cursor.execute(*statement)
        return cursor.fetchone()


def _key(model: type[Model], value: Any) -> Any:
    """``value`` as the database stores ``model``'s primary key (SQLite keeps a UUID as hex text)."""
    return model._meta.pk.get_db_prep_value(value, connections[DEFAULT_DB_ALIAS])


@cache
def _sql(template: str) -> str:
    """``template`` with the tables ({job}, {wait}, {escalation}; aliased j, w, e), their columns in
    ``from_row``'s order ({job_columns}, ...) and {for_update} filled in for this database."""
    qn = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return template.format(
        job=qn(Job._meta.db_table), wait=qn(Wait._meta.db_table), escalation=qn(Escalation._meta.db_table),
        job_columns=select_list(Job, "j"), wait_columns=select_list(Wait, "w"),
        escalation_columns=select_list(Escalation, "e"), for_update=_for_update(),
    )


def lock_job(job_id: Any) -> tuple[str, list[Any]]:
    """The job's row, locked."""
    return _sql("SELECT {job_columns} FROM {job} j WHERE j.id = %s{for_update}"), [_key(Job, job_id)]


def lock_wait(job_id: Any, wait_id: str) -> tuple[str, list[Any]]:
    """A job's wait, locked."""
    return (_sql("SELECT {wait_columns} FROM {wait} w WHERE w.job_id = %s AND w.wait_id = %s{for_update}"),
            [_key(Job, job_id), wait_id])


def lock_pending_wait_and_job(job_id: Any, wait_id: str) -> tuple[str, list[Any]]:
    """A job's wait if still pending, with the job, both locked, in one row."""
    return (_sql("SELECT {wait_columns}, {job_columns} FROM {wait} w JOIN {job} j ON j.id = w.job_id "
                 "WHERE w.job_id = %s AND w.wait_id = %s AND w.status = %s{for_update}"),
            [_key(Job, job_id), wait_id, WaitStatus.PENDING])


def lock_escalation_and_wait(escalation_id: Any, job_id: Any) -> tuple[str, list[Any]]:
    """An escalation of a job and the wait it resolves, both locked, in one row."""
    return (_sql("SELECT {escalation_columns}, {wait_columns} FROM {escalation} e "
                 "JOIN {wait} w ON w.job_id = e.job_id AND w.wait_id = e.wait_id "
                 "WHERE e.id = %s AND e.job_id = %s{for_update}"),
            [_key(Escalation, escalation_id), _key(Job, job_id)])


def peek_escalation(escalation_id: Any) -> tuple[str, list[Any]]:
    """An escalation's job, that job's parent, its status and replier (no lock: the look before the locks)."""
    return (_sql("SELECT e.job_id, j.parent_id, e.status, e.replied_by_username "
                 "FROM {escalation} e JOIN {job} j ON j.id = e.job_id WHERE e.id = %s"),
            [_key(Escalation, escalation_id)])


def peek_wait(job_id: Any, wait_id: str) -> tuple[str, list[Any]]:
    """A wait's type and status and its job's parent (no lock: the look before the locks)."""
    return (_sql("SELECT w.type, w.status, j.parent_id FROM {wait} w JOIN {job} j ON j.id = w.job_id "
                 "WHERE w.job_id = %s AND w.wait_id = %s"),
            [_key(Job, job_id), wait_id])


def width(model: type[Model]) -> int:
    """How many columns ``select_list(model, ...)`` holds: where the next model starts in a joined row."""
    return len(_fields(model))


def _step_row(step: Step) -> dict[str, Any]:
    """Every column of a new Step but its id and job, defaults filled in, as ``save()`` would insert it."""
    return {
        name: field.pre_save(step, add=True)
        for name, (_, field) in _fields(Step).items()
        if name not in ("id", "job")
    }


def _assignments(columns: list[str] | tuple[str, ...]) -> str:
    """``a = %s, b = %s``: an UPDATE's SET list for ``columns`` (quoted)."""
    return ", ".join(f"{column} = %s" for column in columns)


@cache
def _checkpoint_sql(set_columns: tuple[str, ...], step_columns: tuple[str, ...]) -> str:
    qn = connections[DEFAULT_DB_ALIAS].ops.quote_name
    assignments = _assignments(set_columns)
    return (
        f"WITH fenced AS (UPDATE {qn(Job._meta.db_table)} SET {assignments} "
        f"WHERE id = %s AND lease_owner = %s AND status = %s RETURNING id) "
        f"INSERT INTO {qn(Step._meta.db_table)} ({qn('job_id')}, {', '.join(step_columns)}) "
        f"SELECT fenced.id, {', '.join(['%s'] * len(step_columns))} FROM fenced RETURNING id"
    )


def fenced_checkpoint(job_id: Any, owner: str, job_values: dict[str, Any], step: Step) -> tuple[str, list[Any]]:
    """Update the job's row while ``owner`` holds its lease, and insert ``step`` for it: one statement.

    It returns the new Step's id, or no row when the lease was lost (the
    UPDATE matched nothing, so the INSERT had nothing to insert).
    """
    set_columns, set_params = _prepared(Job, job_values)
    step_columns, step_params = _prepared(Step, _step_row(step))
    sql = _checkpoint_sql(tuple(set_columns), tuple(step_columns))
    return sql, [*set_params, job_id, owner, JobStatus.RUNNING, *step_params]


def resolve_and_resume(wait_pk: Any, wait_values: dict[str, Any], job_pk: Any, job_values: dict[str, Any],
                       also: Sequence[tuple[Model, dict[str, Any]]] = ()) -> tuple[str, list[Any]]:
    """Record a wait's outcome and resume its blocking job if no other wait of it is pending: one statement.

    Both UPDATEs see the rows as they were before the statement, so the
    resolved wait still looks pending to the job's condition and is left out
    of it by id. The caller holds the job's row lock: of two waits resolving
    at once, the second sees the first's wait resolved. ``also``: other rows
    the outcome writes, (instance, values), such as the escalation's reply,
    updated in the same statement. It returns the job's id when the job
    resumed, no row when it did not.
    """
    qn = connections[DEFAULT_DB_ALIAS].ops.quote_name
    wait_table, job_table = qn(Wait._meta.db_table), qn(Job._meta.db_table)
    others, other_params = [], []
    for n, (row, values) in enumerate(also):
        columns, params = _prepared(type(row), values)
        others.append(f"also{n} AS (UPDATE {qn(row._meta.db_table)} SET {_assignments(columns)} WHERE id = %s), ")
        other_params += [*params, row.pk]
    wait_columns, wait_params = _prepared(Wait, wait_values)
    job_columns, job_params = _prepared(Job, job_values)
    wait_fields = _fields(Wait)
    wait_job, wait_status = wait_fields["job"][0], wait_fields["status"][0]
    sql = (
        f"WITH {''.join(others)}resolved AS (UPDATE {wait_table} SET {_assignments(wait_columns)} WHERE id = %s) "
        f"UPDATE {job_table} SET {_assignments(job_columns)} WHERE id = %s AND status = %s "
        f"AND NOT EXISTS (SELECT 1 FROM {wait_table} WHERE {wait_job} = %s AND {wait_status} = %s AND id <> %s) "
        f"RETURNING id"
    )
    return sql, [*other_params, *wait_params, wait_pk, *job_params, job_pk, JobStatus.BLOCKING, job_pk,
                 WaitStatus.PENDING, wait_pk]


def claim(job_id: Any, owner: str, *, now: Any, lease_expires_at: Any, max_claims: int,
          gated_flows: list[str], runnable: list[str]) -> tuple[str, list[Any]]:
    """Take the job's row if it is free and runnable now, and lease it to ``owner``: one statement.

    Runnable: pending and due, or running on a lease that ran out, and not
    yet claimed ``max_claims`` times, of a flow version this process has
    (``runnable``: ``"name:version"``), and holding a slot if its flow is one
    of ``gated_flows`` (those with a concurrency limit, whose jobs take a
    slot on the slower path first). A row another transaction holds is
    skipped, not waited for. It returns the job's row as it is now
    (``from_row``'s columns), then whether it never started before, its
    status and its lease owner before the claim, and the waits its context
    holds as pending that have ended since (JSON text: a list of ``[wait_id,
    status, value, error]``, read in the claim's snapshot, so a resumed job
    needs no second round trip to load them); no row when the job is not
    free to take this way.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    table = connection.ops.quote_name(Job._meta.db_table)
    wait_table = connection.ops.quote_name(Wait._meta.db_table)
    _, datetime = _fields(Job)["updated_at"]
    now, lease_expires_at = (datetime.get_db_prep_save(value, connection) for value in (now, lease_expires_at))
    sql = (
        f"WITH claimable AS (SELECT id, started_at, status, lease_owner FROM {table} "
        f"WHERE id = %s AND claims < %s AND ("
        f"(status = %s AND (run_after IS NULL OR run_after <= %s)) OR "
        f"(status = %s AND (lease_expires_at IS NULL OR lease_expires_at <= %s))) "
        f"AND (slot = %s OR NOT flow = ANY(%s)) AND (flow || ':' || flow_version::text) = ANY(%s) "
        f"FOR UPDATE SKIP LOCKED) "
        f"UPDATE {table} AS job SET status = %s, lease_owner = %s, lease_expires_at = %s, "
        f"started_at = COALESCE(job.started_at, %s), run_after = NULL, claims = job.claims + 1, updated_at = %s, "
        f"pending_reason = '', slot = CASE WHEN job.slot = %s THEN '' ELSE job.slot END "
        f"FROM claimable WHERE job.id = claimable.id "
        f"RETURNING {select_list(Job, 'job')}, claimable.started_at IS NULL AS first_start, "
        f"claimable.status AS was_status, claimable.lease_owner AS was_owner, "
        f"(SELECT COALESCE(jsonb_agg(jsonb_build_array(w.wait_id, w.status, w.value, w.error)), '[]'::jsonb) "
        f"FROM {wait_table} AS w WHERE w.job_id = job.id AND w.status <> %s "
        f"AND job.context -> 'waits' -> w.wait_id ->> 'status' = %s) AS ended_waits"
    )
    params = [
        job_id, max_claims, JobStatus.PENDING, now, JobStatus.RUNNING, now,
        SlotStatus.HELD, list(gated_flows), list(runnable),
        JobStatus.RUNNING, owner, lease_expires_at, now, now, SlotStatus.WAITING,
        WaitStatus.PENDING, WaitStatus.PENDING,
    ]
    return sql, params


def _database_default(field: Field, value: Any) -> Any:
    """A field left to its ``db_default`` (a literal here, as every one of Job's is) gets that literal."""
    if isinstance(value, DatabaseDefault):
        return getattr(field.db_default, "value", field.db_default)
    return value


def _saved(field: Field, job: Job) -> Any:
    """The value ``save()`` would insert for the new job's ``field`` (``pre_save``, its database default)."""
    return _database_default(field, field.pre_save(job, add=True))


def insert_job(job: Job) -> tuple[str, list[Any]]:
    """INSERT one new job's row: every column, as ``save()`` would insert it.

    ``insert_jobs([job])`` would store the same row; one plain VALUES list
    is the cheaper statement for the one job ``schedule()`` inserts.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    columns, params = [], []
    for column, field in _fields(Job).values():
        columns.append(column)
        params.append(field.get_db_prep_save(_saved(field, job), connection))
    sql = (f"INSERT INTO {connection.ops.quote_name(Job._meta.db_table)} ({', '.join(columns)}) "
           f"VALUES ({', '.join(['%s'] * len(columns))})")
    return sql, params


def insert_jobs(jobs: list[Job]) -> tuple[str, list[Any]]:
    """INSERT every job in one statement whose size does not grow with the rows: one array per column.

    ``bulk_create`` sends one placeholder per value (29,000 for 1,000 jobs),
    which Django compiles and psycopg rewrites value by value; most of
    ``schedule_many`` went there. Here a column whose value is the same in
    every row (status, step, the timestamps...) is one parameter, and each
    other column one array, unnested in the given order (``WITH
    ORDINALITY``), so rows still enter the unique index in that order. The
    values pass through ``pre_save`` and ``get_db_prep_save`` as the ORM's.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    table = connection.ops.quote_name(Job._meta.db_table)
    columns: list[str] = []
    selected: list[str] = []
    arrays: list[str] = []
    params: list[Any] = []
    array_params: list[Any] = []
    for name, (column, field) in _fields(Job).items():
        values = [_saved(field, job) for job in jobs]
        db_type = field.db_type(connection)
        columns.append(column)
        if name != "id" and all(value == values[0] and type(value) is type(values[0]) for value in values):
            selected.append(f"%s::{db_type}")
            params.append(field.get_db_prep_save(values[0], connection))
        else:
            alias = f"v{len(arrays)}"
            arrays.append(f"%s::{db_type}[]")
            array_params.append([field.get_db_prep_save(value, connection) for value in values])
            selected.append(f"rows.{alias}")
    aliases = ", ".join(f"v{i}" for i in range(len(arrays)))
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(selected)} "
        f"FROM unnest({', '.join(arrays)}) WITH ORDINALITY AS rows({aliases}, n) ORDER BY rows.n"
    )
    # The select list's constants come before the unnest's arrays in the statement's text.
    return sql, [*params, *array_params]
