"""ToolAgent as a durable job: scheduled, checkpointed, escalated and retried by the scheduler.

Embedded ("immediate") mode, so each scheduler call runs the job in this
process until it blocks or ends; the agents are the ones registered in
tests/testapp/agent_flows.py, aimed at this test's scripted server.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import override_settings

from envoy_django import scheduler
from envoy_django.models import Escalation, Step
from envoy_django.testing.openai_server import error_reply, text_reply, tool_call_reply
from tests.testapp import agent_flows

pytestmark = pytest.mark.django_db(transaction=True)


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def committed_phases(job_id: str) -> list[tuple[str, str]]:
    return list(Step.objects.filter(job_id=job_id, error="").order_by("pk").values_list("state", "phase"))


def test_question_runs_to_the_final_answer_with_usage_totals(server, scripted_agents):
    server.add(
        tool_call_reply(("add", {"a": 2, "b": 2}), usage=usage(10, 5)),
        text_reply("2 + 2 = 4.", usage=usage(20, 7)),
    )

    job = scheduler.get_job(scheduler.schedule("assistant", "What is 2+2?"))

    assert job.status == "done", job.error
    assert job.output == "2 + 2 = 4."
    data = job.context["data"]
    assert data["usage"] == {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42, "calls": 2}
    assert data["messages"][0] == {"role": "user", "content": "What is 2+2?"}
    assert data["messages"][-1] == {"role": "assistant", "content": "2 + 2 = 4."}
    assert data["pending_tool_calls"] == [] and "$approvals" not in data
    assert agent_flows.tool_runs == [{"tool": "add", "args": {"a": 2, "b": 2}, "pid": agent_flows.os.getpid()}]
    assert len(server.requests) == 2
    assert server.requests[1]["messages"][-1]["role"] == "tool"
    assert server.requests[1]["messages"][-1]["content"] == "4"
    # One checkpoint per phase with a handler: the model call, its routing
    # decision, the approval check (nothing to ask here), the tool batch,
    # the next model call and its decision to end.
    assert committed_phases(job.pk) == [("Plan", "state"), ("Plan", "route"), ("ToolCall", "enter"),
                                        ("ToolCall", "state"), ("Plan", "state"), ("Plan", "route")]


def test_approved_tool_runs_and_the_job_finishes(server, scripted_agents):
    server.add(tool_call_reply(("transfer", {"to": "bob", "amount": 5})), text_reply("Sent 5 to bob."))

    job_id = scheduler.schedule("assistant", "Send bob 5")

    job = scheduler.get_job(job_id)
    assert job.status == "blocking" and job.state == "ToolCall"
    escalation = Escalation.objects.get(job_id=job_id)
    assert escalation.user == "alice"  # the tool's own approver
    assert "'transfer'" in escalation.message
    assert '"amount": 5' in escalation.message and '"to": "bob"' in escalation.message
    assert escalation.on_reject == "continue"
    assert [(i["id"], i["type"]) for i in escalation.inputs] == [("approve", "approve"), ("comment", "comment")]
    assert agent_flows.tool_runs == [] and len(server.requests) == 1  # nothing runs before the answer

    scheduler.reply_to_escalation(escalation.pk, {"approve": True, "comment": "ok"}, "approved", user="alice")

    job = scheduler.get_job(job_id)
    assert job.status == "done", job.error
    assert job.output == "Sent 5 to bob."
    assert [run["tool"] for run in agent_flows.tool_runs] == ["transfer"]
    assert json.loads(server.requests[1]["messages"][-1]["content"]) == {"ok": True, "sent": 5, "to": "bob"}
    escalation.refresh_from_db()
    assert escalation.status == "approved" and escalation.replied_by_username == "alice"
    assert "$approvals" not in job.context["data"]


def test_rejected_tool_does_not_run_and_the_model_reads_the_comment(server, scripted_agents):
    server.add(tool_call_reply(("transfer", {"to": "mallory", "amount": 1000})),
               text_reply("I did not send the money."))
    job_id = scheduler.schedule("assistant", "Send mallory 1000")
    escalation = Escalation.objects.get(job_id=job_id)

    scheduler.reply_to_escalation(escalation.pk, {"approve": False, "comment": "Not to mallory."}, "rejected",
                                  user="alice")

    job = scheduler.get_job(job_id)
    assert job.status == "done", job.error  # on_reject="continue": the model decides what next
    assert job.output == "I did not send the money."
    assert agent_flows.tool_runs == []
    tool_message = server.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"] == "Rejected by reviewer: Not to mallory."


def test_each_approval_tool_in_a_turn_asks_its_approver(server, scripted_agents):
    """One turn, two gated calls: the job resumes only when both are answered."""
    server.add(
        tool_call_reply(("transfer", {"to": "bob", "amount": 5}), ("close_account", {"account": "bob-1"})),
        text_reply("Sent the money; the account stays open."),
    )
    job_id = scheduler.schedule("assistant", "Pay bob 5 and close bob-1")

    escalations = {e.user: e for e in Escalation.objects.filter(job_id=job_id)}
    assert set(escalations) == {"alice", "ops"}  # the tool's approver, then the agent's default
    assert "'close_account'" in escalations["ops"].message and '"account": "bob-1"' in escalations["ops"].message

    scheduler.reply_to_escalation(escalations["alice"].pk, {"approve": True}, "approved", user="alice")
    assert scheduler.get_job(job_id).status == "blocking" and agent_flows.tool_runs == []
    scheduler.reply_to_escalation(escalations["ops"].pk, {"comment": "keep it"}, "rejected", user="carol")

    job = scheduler.get_job(job_id)
    assert job.status == "done", job.error
    assert [run["tool"] for run in agent_flows.tool_runs] == ["transfer"]
    tool_messages = [m["content"] for m in server.requests[1]["messages"] if m["role"] == "tool"]
    assert json.loads(tool_messages[0])["sent"] == 5
    assert tool_messages[1] == "Rejected by reviewer: keep it"


def test_nul_and_stray_surrogates_from_the_model_do_not_break_the_checkpoint(server, scripted_agents):
    """PostgreSQL's jsonb refuses both; model text, tool arguments and tool results are cleaned."""
    server.add(tool_call_reply(("close_account", {"account": "bob\x00"})), text_reply("closed \x00\ud800."))
    job_id = scheduler.schedule("assistant", "Close bob's account")
    escalation = Escalation.objects.get(job_id=job_id)
    assert escalation.user == "ops" and '"account": "bob\ufffd"' in escalation.message

    scheduler.reply_to_escalation(escalation.pk, {"approve": True}, "approved", user="ops")

    job = scheduler.get_job(job_id)
    assert job.status == "done", job.error
    assert job.output == "closed \ufffd\ufffd."
    assert agent_flows.tool_runs[0]["args"] == {"account": "bob\ufffd"}
    assert server.requests[1]["messages"][-1]["content"] == "account bob\ufffd closed"


def test_unauthorized_fails_the_job_at_once(server, scripted_agents):
    scripted_agents(max_retries=3)  # the client does not retry a 401 either
    server.add(error_reply(401, "Incorrect API key provided: test-key"))

    job = scheduler.get_job(scheduler.schedule("assistant", "What is 2+2?"))

    assert job.status == "failed"
    assert "HTTP 401" in job.error and "Incorrect API key" in job.error and "scripted-model" in job.error
    assert "not retried" in job.error
    assert job.attempts == 0  # no job retry either
    assert len(server.requests) == 1
    (failed,) = Step.objects.filter(job_id=job.pk).exclude(error="")
    assert failed.state == "Plan" and "HTTP 401" in failed.error


@pytest.mark.parametrize("status", [500, 429])
def test_server_errors_beyond_client_retries_retry_the_job_until_it_recovers(server, scripted_agents, status):
    scripted_agents(max_retries=1)  # each attempt: one request plus one client retry
    server.add(
        tool_call_reply(("add", {"a": 1, "b": 2})),
        error_reply(status), error_reply(status),  # job attempt 1 of the second Plan
        error_reply(status), error_reply(status),  # job attempt 2
        text_reply("1 + 2 = 3."),                  # job attempt 3: the server recovered
    )

    with override_settings(ENVOY={**settings.ENVOY, "MAX_RETRIES": 2}):
        job = scheduler.get_job(scheduler.schedule("assistant", "What is 1+2?"))

    assert job.status == "done", job.error
    assert job.output == "1 + 2 = 3."
    assert job.attempts == 0  # reset by the successful commit
    assert len(server.requests) == 6
    failures = list(Step.objects.filter(job_id=job.pk).exclude(error="").order_by("pk"))
    assert [(s.state, s.attempt) for s in failures] == [("Plan", 1), ("Plan", 2)]
    assert all(f"HTTP {status}" in s.error for s in failures)
    # A retry reruns only the failed phase: the tool of the committed
    # ToolCall ran once, and only the answered model calls count.
    assert [run["tool"] for run in agent_flows.tool_runs] == ["add"]
    assert job.context["data"]["usage"]["calls"] == 2
    retried = server.requests[1:]
    assert all(request["messages"] == retried[0]["messages"] for request in retried)


def test_server_errors_past_max_retries_fail_the_job_with_the_last_error(server, scripted_agents):
    server.add(error_reply(500, "upstream overloaded"), error_reply(500, "upstream overloaded"))

    with override_settings(ENVOY={**settings.ENVOY, "MAX_RETRIES": 1}):
        job = scheduler.get_job(scheduler.schedule("assistant", "What is 2+2?"))

    assert job.status == "failed"
    assert job.error_type == "LlmRetryableError"
    assert "HTTP 500" in job.error and "upstream overloaded" in job.error
    assert job.attempts == 2 and len(server.requests) == 2


def test_agents_without_a_server_fail_instead_of_calling_a_real_api(monkeypatch):
    from tests.testapp.agent_flows import BASE_URL_ENV, endpoint

    endpoint.reset()
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    job = scheduler.get_job(scheduler.schedule("assistant", "hi"))
    assert job.status == "failed" and "no scripted OpenAI server" in job.error
