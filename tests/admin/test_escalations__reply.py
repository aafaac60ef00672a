"""The approve/reject page: permissions, the form built from the inputs, the service call, replies that lose a race."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.admin.models import LogEntry

from envoy_django import scheduler
from envoy_django.admin import escalations as escalation_admin
from envoy_django.exceptions import EscalationError
from envoy_django.models import Escalation, Job
from tests.scheduler.conftest import snapshot_rows

pytestmark = pytest.mark.django_db(transaction=True)

GOOD = {"input-reason": "a", "input-note": "Looks fine", "input-ok": "on", "decision": "approved"}


def reply_url(escalation) -> str:
    return f"/admin/envoy_django/escalation/{escalation.pk}/reply/"


def job_url(job_id) -> str:
    return f"/admin/envoy_django/job/{job_id}/change/"


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def pending(family):
    """A family job blocked on an escalation assigned to alice."""
    return family("alice")


@pytest.fixture
def alice(make_user, login):
    return login(make_user("alice", "reply_escalation", "view_job"))


def test_form_is_built_from_the_inputs(alice, pending):
    response = alice.get(reply_url(pending[1]))
    assert response.status_code == 200
    form = response.context["form"]
    assert list(form.fields) == ["reason", "note", "ok"]
    assert form.fields["reason"].choices == [("", "---------"), ("a", "A"), ("b", "B")]
    assert form.fields["reason"].required and not form.fields["note"].required and not form.fields["ok"].required
    html = response.content.decode()
    assert "Approve this action?" in html
    assert 'name="decision" value="approved"' in html and 'name="decision" value="rejected"' in html
    assert f'href="{job_url(pending[0])}"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert '<textarea name="input-note"' in html and 'type="checkbox" name="input-ok"' in html


def test_assigned_user_with_permission_approves(alice, pending):
    job_id, escalation = pending
    response = alice.post(reply_url(escalation), GOOD)
    assert response.status_code == 302 and response["Location"] == job_url(job_id)
    job = Job.objects.get(pk=job_id)
    assert job.status == "done"
    assert job.output["reply"]["value"] == {"reason": "a", "note": "Looks fine", "ok": True}
    escalation.refresh_from_db()
    assert (escalation.status, escalation.replied_by_username) == ("approved", "alice")
    log = LogEntry.objects.get(object_id=str(escalation.pk))
    assert log.user.username == "alice" and "Approved" in log.get_change_message()
    followed = alice.get(response["Location"])
    assert messages_of(followed) == [f"Approved “Approve this action?” for job {job_id[:8]}."]


def test_rejection_fails_the_job_with_the_comment(alice, pending):
    job_id, escalation = pending
    alice.post(reply_url(escalation), {**GOOD, "input-note": "too risky", "decision": "rejected"})
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.error) == ("failed", "escalation rejected by alice: too risky")


def test_superuser_may_reply_to_anyones_escalation(superuser_client, pending):
    response = superuser_client.post(reply_url(pending[1]), GOOD)
    assert response.status_code == 302
    assert Escalation.objects.get(pk=pending[1].pk).replied_by_username == "root"


def test_anonymous_is_sent_to_login(client, pending):
    for response in (client.get(reply_url(pending[1])), client.post(reply_url(pending[1]), GOOD)):
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/?next=")
    assert Escalation.objects.get(pk=pending[1].pk).status == "pending"


def test_staff_without_the_reply_permission_may_look_but_not_reply(make_user, login, pending):
    client = login(make_user("viewer", "view_escalation"))
    html = client.get(reply_url(pending[1])).content.decode()
    assert 'name="decision"' not in html and "Only alice" in html
    before = snapshot_rows()
    assert client.post(reply_url(pending[1]), GOOD).status_code == 403
    assert snapshot_rows() == before


def test_staff_without_any_permission_gets_403(make_user, login, pending):
    client = login(make_user("nobody"))
    assert client.get(reply_url(pending[1])).status_code == 403
    assert client.post(reply_url(pending[1]), GOOD).status_code == 403


def test_another_user_with_the_permission_gets_403(make_user, login, pending):
    bob = login(make_user("bob", "reply_escalation"))
    assert 'name="decision"' not in bob.get(reply_url(pending[1])).content.decode()
    before = snapshot_rows()
    assert bob.post(reply_url(pending[1]), GOOD).status_code == 403
    assert snapshot_rows() == before


def test_posting_without_the_csrf_token_is_refused(make_user, pending):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("alice", "reply_escalation"))
    assert client.post(reply_url(pending[1]), GOOD).status_code == 403
    assert Escalation.objects.get(pk=pending[1].pk).status == "pending"


def test_unknown_escalation_is_404(alice):
    assert alice.get(f"/admin/envoy_django/escalation/{uuid.uuid4()}/reply/").status_code == 404


@pytest.mark.parametrize("data, field, error", [
    ({**GOOD, "input-reason": ""}, "reason", "This field is required."),
    ({**GOOD, "input-reason": "c"}, "reason", "Select a valid choice. c is not one of the available choices."),
    ({**GOOD, "decision": "maybe"}, None, "Choose Approve or Reject."),
    ({k: v for k, v in GOOD.items() if k != "decision"}, None, "Choose Approve or Reject."),
])
def test_invalid_reply_shows_the_form_again_and_changes_nothing(alice, pending, data, field, error):
    before = snapshot_rows()
    response = alice.post(reply_url(pending[1]), data)
    assert response.status_code == 200
    assert error in response.context["form"].errors[field or "__all__"]
    assert 'class="errornote"' in response.content.decode()
    assert snapshot_rows() == before


def test_second_reply_is_refused_with_who_replied(alice, pending):
    alice.post(reply_url(pending[1]), GOOD, follow=True)
    before = snapshot_rows()
    response = alice.post(reply_url(pending[1]), {**GOOD, "decision": "rejected"}, follow=True)
    assert messages_of(response) == ["This escalation was already approved by alice. Your reply was not recorded."]
    assert snapshot_rows() == before
    html = response.content.decode()
    assert 'name="decision"' not in html and "already approved by alice" in html


def test_reply_that_loses_a_race_to_another_tab_changes_nothing(alice, pending, monkeypatch):
    """Another tab answers between this page's check and its service call."""
    real_reply = scheduler.reply_to_escalation

    def other_tab_first(escalation_id, values, status, *, user=None):
        real_reply(escalation_id, {"reason": "b"}, "rejected", user="carol")
        snapshot = snapshot_rows()
        try:
            real_reply(escalation_id, values, status, user=user)
        finally:
            assert snapshot_rows() == snapshot

    monkeypatch.setattr(escalation_admin.scheduler, "reply_to_escalation", other_tab_first)
    response = alice.post(reply_url(pending[1]), GOOD, follow=True)
    assert messages_of(response) == [
        f"escalation {pending[1].pk} was already rejected by carol. Your reply was not recorded."
    ]
    assert Escalation.objects.get(pk=pending[1].pk).replied_by_username == "carol"


def test_service_error_becomes_a_form_error(alice, pending, monkeypatch):
    def refuse(*args, **kwargs):
        raise EscalationError("reply to escalation x: input 'reason' is required")

    monkeypatch.setattr(escalation_admin.scheduler, "reply_to_escalation", refuse)
    response = alice.post(reply_url(pending[1]), GOOD)
    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == ["reply to escalation x: input 'reason' is required"]
    assert Escalation.objects.get(pk=pending[1].pk).status == "pending"


def test_redirect_without_job_view_permission_goes_to_the_list(make_user, login, pending):
    client = login(make_user("alice", "reply_escalation"))
    response = client.post(reply_url(pending[1]), GOOD)
    assert response["Location"] == "/admin/envoy_django/escalation/"
