"""A model call's text streams to the job page while the call runs; the checkpoint keeps only the final message.

The real ``openai`` client streams from the local scripted server, which
holds the stream half way until the test lets it go: in between, the job
page's status endpoint shows the text so far.
"""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from envoy_django import scheduler
from envoy_django.models import Job
from envoy_django.streaming import streamed_text
from envoy_django.testing.openai_server import text_reply
from envoy_django.testing.processes import wait_until
from tests.support import close_thread_connection

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.services  # PostgreSQL's: a job writing in one thread while pages read in others locks SQLite's tables
def test_the_job_page_shows_the_text_as_it_grows(scripted_agents, server):
    release = threading.Event()
    server.add(text_reply("Two plus two is four, said the model.",
                          pieces=["Two plus ", "two is ", "four, ", "said ", "the model."], hold=release))
    admin = get_user_model().objects.create_superuser("streamer", "s@example.com", "pw")
    client = Client()
    client.force_login(admin)
    started: list[str] = []

    def schedule() -> None:
        try:
            started.append(scheduler.schedule("assistant", "What is 2 + 2?"))
        finally:
            close_thread_connection()

    runner = threading.Thread(target=schedule)
    runner.start()  # the embedded mode runs the job in the scheduling thread
    try:
        job = wait_until(lambda: Job.objects.filter(flow="assistant", status="running").first(),
                         what="the agent's job to run")
        url = f"/admin/envoy_django/job/{job.pk}/status/"
        # Three of the five pieces came before the pause; all three are shown within a moment.
        wait_until(lambda: client.get(url).json()["stream"] == "Two plus two is four, ",
                   what="the text so far on the status endpoint")
        assert "Two plus" in client.get(f"/admin/envoy_django/job/{job.pk}/change/").content.decode()
        assert Job.objects.get(pk=job.pk).output is None  # nothing of the call is checkpointed yet
    finally:
        release.set()
        runner.join(60)
    job = Job.objects.get(pk=started[0])
    assert job.status == "done" and job.output == "Two plus two is four, said the model."
    assert client.get(f"/admin/envoy_django/job/{job.pk}/status/").json()["stream"] is None
    assert streamed_text(job.pk) is None  # cleared once the call ended
    assert server.requests[0]["stream"] is True


def test_a_call_outside_a_job_streams_without_publishing(server, provider):
    server.add(text_reply("plain answer"))
    response = provider.generate([{"role": "user", "content": "hi"}])
    assert (response.text, response.finish_reason) == ("plain answer", "stop")
    assert response.usage["total_tokens"] > 0


def test_a_cache_that_is_down_costs_the_call_nothing(scripted_agents, server):
    from unittest import mock

    server.add(text_reply("still answered"))
    with mock.patch("django.core.cache.backends.locmem.LocMemCache.set", side_effect=ConnectionError("down")):
        job_id = scheduler.schedule("assistant", "hello?")
    assert Job.objects.get(pk=job_id).output == "still answered"


def test_the_check_names_a_stream_cache_that_caches_lack():
    from django.test import override_settings

    from envoy_django.checks import check_envoy_settings

    with override_settings(ENVOY={"STREAM_CACHE": "nope"}):
        assert [e.id for e in check_envoy_settings()] == ["envoy_django.E018"]
