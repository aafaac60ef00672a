"""ToolAgent(rate_limit=...): every model call takes from a shared limit; over it, the job waits, no call is made.

Through the real openai client against the scripted local server, in the
embedded mode; the limit's clock is mocked so the test does not depend on
where in a window it runs.
"""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.core.cache import caches
from django.test import override_settings

from envoy_django import scheduler
from envoy_django.exceptions import FlowDefinitionError
from envoy_django.models import Job
from envoy_django.testing.openai_server import text_reply, tool_call_reply
from tests.testapp import agent_flows

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_800_000_000.0  # a window start for "3/m"
LIMITED = {"EXECUTION": "immediate", "RATE_LIMITS": {"test-api": "3/m"}, "RATE_LIMIT_CACHE": "default"}


def at(seconds: float):
    return mock.patch("envoy_django.ratelimits._now", return_value=seconds)


@override_settings(ENVOY=LIMITED)
def test_model_calls_over_the_limit_wait_for_the_next_window(server, scripted_agents):
    caches["default"].clear()
    server.add(
        tool_call_reply(("add", {"a": 2, "b": 2})), text_reply("4."),  # the first job: two calls
        text_reply("Hi."),  # the second: one call, the last of the window
        text_reply("Later."),  # the third, in the next window
    )
    with at(T0 + 1):
        first = scheduler.schedule("limited_assistant", "What is 2+2?")
        second = scheduler.schedule("limited_assistant", "Hello")
        third = scheduler.schedule("limited_assistant", "Anyone?")

    assert [Job.objects.get(pk=job_id).status for job_id in (first, second, third)] == ["done", "done", "pending"]
    assert len(server.requests) == 3  # the third job made no call: it waits, a worker does not
    waiting = Job.objects.get(pk=third)
    assert waiting.run_after == dt.datetime.fromtimestamp(T0 + 60, tz=dt.UTC)
    assert "waiting for rate limit 'test-api' (3/m)" in waiting.pending_reason
    assert agent_flows.tool_runs and waiting.attempts == 0

    later = dt.datetime.fromtimestamp(T0 + 61, tz=dt.UTC)
    with at(T0 + 61), mock.patch("django.utils.timezone.now", return_value=later):
        scheduler.cleanup_orphaned_jobs()
    waiting.refresh_from_db()
    assert (waiting.status, waiting.output) == ("done", "Later.")
    assert len(server.requests) == 4
    caches["default"].clear()


def test_rate_limit_must_be_a_name():
    from envoy_django import ToolAgent

    with pytest.raises(FlowDefinitionError, match="rate_limit must name a limit"):
        ToolAgent(agent_flows.endpoint, rate_limit=60)
