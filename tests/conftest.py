"""Test-wide wiring: which services are real, and skips that CI refuses.

``@pytest.mark.services`` marks a test that needs real PostgreSQL, Redis and
separate worker processes. Without DATABASE_URL/REDIS_URL it is skipped with
the reason printed; with ENVOY_TEST_REQUIRE_SERVICES=1 every skip of any
test is turned into a failure, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_SERVICES = os.environ.get("ENVOY_TEST_REQUIRE_SERVICES") == "1"
HAVE_POSTGRES = (os.environ.get("DATABASE_URL") or "").startswith(("postgres://", "postgresql://"))
HAVE_REDIS = bool(os.environ.get("REDIS_URL"))


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"envoy services: postgres={'yes' if HAVE_POSTGRES else 'no (SQLite)'}, "
        f"redis={'yes' if HAVE_REDIS else 'no (fakeredis)'}, require={REQUIRE_SERVICES}"
    ]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("services") and not (HAVE_POSTGRES and HAVE_REDIS):
        pytest.skip("needs PostgreSQL and Redis (set DATABASE_URL and REDIS_URL) for real worker processes")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if REQUIRE_SERVICES and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"ENVOY_TEST_REQUIRE_SERVICES=1 forbids skipping: {reason}"
    return report


@pytest.fixture
def workers(redis_conn, transactional_db):
    """Real ``envoy_worker`` supervisors on the test database; the test itself schedules in rq mode."""
    from django.test import override_settings

    from envoy_django.testing.processes import WorkerProcesses
    from tests.support import ROOT, RQ_ENVOY, worker_env

    handle = WorkerProcesses("tests.settings", cwd=ROOT, env=worker_env("rq"))
    with override_settings(ENVOY=RQ_ENVOY):
        try:
            yield handle
        finally:
            handle.stop()


@pytest.fixture
def redis_conn():
    """The Envoy queue's Redis connection, emptied before and after the test."""
    import django_rq

    conn = django_rq.get_connection("envoy")
    conn.flushdb()
    yield conn
    conn.flushdb()
