"""Escalations to a group in the admin: members see them as theirs and may answer; approving needs the box ticked."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from envoy_django import scheduler
from envoy_django.models import Escalation

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/admin/envoy_django/escalation/"


def ask(**config) -> Escalation:
    job_id = scheduler.schedule("ask_someone", config)
    return Escalation.objects.get(job_id=job_id)


def reply_url(escalation: Escalation) -> str:
    return f"{URL}{escalation.pk}/reply/"


@pytest.fixture
def rita(make_user, login):
    """A reviewer: in the "reviewers" group, with the reply permission."""
    user = make_user("rita", "reply_escalation", "view_job")
    user.groups.add(Group.objects.get(name="reviewers"))
    return login(user)


def test_my_list_holds_what_my_groups_are_asked_and_says_whom_and_how_long(rita):
    to_group = ask(group="reviewers")
    to_bob = ask(user="bob")
    response = rita.get(URL)
    assert {e.pk for e in response.context["cl"].result_list} == {to_group.pk}
    html = response.content.decode()
    assert "group reviewers" in html
    assert " s</td>" in html or " ms</td>" in html  # how long it has waited
    everyone = rita.get(URL, {"assigned": "all"})
    assert {e.pk for e in everyone.context["cl"].result_list} == {to_group.pk, to_bob.pk}


def test_a_member_answers_a_group_escalation(rita):
    escalation = ask(group="reviewers")
    response = rita.post(reply_url(escalation), {"input-verdict": "publish", "input-sure": "on",
                                                 "decision": "approved"})
    assert response.status_code == 302
    escalation.refresh_from_db()
    assert (escalation.status, escalation.replied_by_username) == ("approved", "rita")


def test_a_non_member_may_not(make_user, login):
    outsider = login(make_user("otto", "reply_escalation"))
    escalation = ask(group="reviewers")
    assert outsider.post(reply_url(escalation), {"input-verdict": "publish", "input-sure": "on",
                                                 "decision": "approved"}).status_code == 403
    escalation.refresh_from_db()
    assert escalation.status == "pending"


def test_approving_with_the_box_unticked_is_a_form_error_on_that_box(rita):
    escalation = ask(group="reviewers")
    response = rita.post(reply_url(escalation), {"input-verdict": "publish", "decision": "approved"})
    assert response.status_code == 200
    assert response.context["form"].errors == {"sure": ["Tick this to approve, or reject."]}
    escalation.refresh_from_db()
    assert escalation.status == "pending"
    # Rejecting with it unticked is how a rejection reads.
    assert rita.post(reply_url(escalation), {"input-verdict": "revise", "decision": "rejected"}).status_code == 302
