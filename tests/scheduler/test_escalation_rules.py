"""Escalations the way Django teams assign work: to a user, a group or both, who must exist.

And an ``approve`` input means what it says: approving with it unticked is
refused (before, approving with "Run transfer" unticked still ran a 5,000
transfer). Select options keep the order they were declared in, on every
backend (PostgreSQL's jsonb reorders object keys).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User

from envoy_django import scheduler
from envoy_django.exceptions import EscalationError, InvalidArgumentError
from envoy_django.models import Escalation, Job
from envoy_django.scheduler import assignees

pytestmark = pytest.mark.django_db(transaction=True)


def ask(**config) -> tuple[str, Escalation | None]:
    job_id = scheduler.schedule("ask_someone", config)
    return job_id, Escalation.objects.filter(job_id=job_id).first()


def member(username: str, *groups: str, may_reply: bool = True) -> User:
    user = User.objects.create_user(username, is_staff=True)
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    if may_reply:
        user.user_permissions.add(Permission.objects.get(codename="reply_escalation"))
    return User.objects.get(pk=user.pk)  # fresh: permissions are cached per instance


# --- who is asked ------------------------------------------------------------------


@pytest.mark.parametrize("config, named", [
    ({"user": "nobody"}, "user 'nobody', who does not exist"),
    ({"group": "nobodies"}, "group 'nobodies', which does not exist"),
    ({"user": "alice", "group": "nobodies"}, "group 'nobodies', which does not exist"),
])
def test_escalating_to_somebody_who_does_not_exist_fails_the_job_naming_them(config, named):
    job_id, escalation = ask(**config)
    job = scheduler.get_job(job_id)
    assert escalation is None
    assert (job.status, job.state) == ("failed", "Ask")
    assert named in job.error and "state 'Ask'" in job.error


def test_a_group_member_with_the_permission_may_answer_and_others_may_not():
    _, escalation = ask(group="reviewers")
    assert (escalation.user, escalation.group) == ("", "reviewers")
    assert assignees.may_answer(member("rita", "reviewers"), escalation)
    assert not assignees.may_answer(member("otto", "others"), escalation)
    assert not assignees.may_answer(member("mute", "reviewers", may_reply=False), escalation)
    assert assignees.may_answer(User.objects.create_superuser("root"), escalation)


def test_user_or_group_either_may_answer():
    _, escalation = ask(user="bob", group="reviewers")
    bob = User.objects.get(username="bob")
    bob.user_permissions.add(Permission.objects.get(codename="reply_escalation"))
    assert assignees.may_answer(User.objects.get(pk=bob.pk), escalation)
    assert assignees.may_answer(member("rita", "reviewers"), escalation)


def test_list_escalations_by_person_group_and_status():
    member("rita", "reviewers")
    _, to_group = ask(group="reviewers")
    _, to_bob = ask(user="bob")
    _, to_alice = ask(user="alice")
    scheduler.reply_to_escalation(to_alice.pk, {"verdict": "publish", "sure": True}, "approved", user="alice")

    def ids(**filters):
        return [row["escalation_id"] for row in scheduler.list_escalations(**filters)]

    assert ids() == [str(to_group.pk), str(to_bob.pk)]  # pending, longest waiting first
    assert ids(user="rita") == [str(to_group.pk)]  # through her group
    assert ids(user="bob") == [str(to_bob.pk)]
    assert ids(group="reviewers") == [str(to_group.pk)]
    assert ids(status="approved") == [str(to_alice.pk)]
    assert len(ids(status=None)) == 3 and len(ids(limit=1)) == 1
    (row,) = scheduler.list_escalations(status="approved")
    assert row["job_id"] == str(to_alice.job_id) and row["flow"] == "ask_someone" and row["replied_by"] == "alice"
    assert row["response"] == {"verdict": "publish", "sure": True}
    with pytest.raises(InvalidArgumentError, match="status must be one of"):
        scheduler.list_escalations(status="open")


# --- what an answer must say -----------------------------------------------------------


def test_approving_with_an_approve_input_unticked_is_refused_and_changes_nothing(unchanged):
    job_id, escalation = ask(user="alice")
    with unchanged(), pytest.raises(EscalationError, match=r"approving needs input 'sure' \(I checked it\) ticked"):
        scheduler.reply_to_escalation(escalation.pk, {"verdict": "publish"}, "approved", user="alice")
    scheduler.reply_to_escalation(escalation.pk, {"verdict": "revise"}, "rejected", user="alice")  # fine
    assert scheduler.get_job(job_id).status == "failed"


def test_select_options_keep_their_declared_order():
    _, escalation = ask(user="alice")
    escalation.refresh_from_db()  # as the database gives it back (jsonb on PostgreSQL)
    assert escalation.inputs[0]["options"] == [["revise", "Revise"], ["publish", "Publish"], ["archive", "Archive"]]
    from envoy_django.admin.forms import EscalationReplyForm

    form = EscalationReplyForm(escalation.inputs)
    assert [value for value, _ in form.fields["verdict"].choices] == ["", "revise", "publish", "archive"]


def test_options_stored_as_a_dict_before_still_read(unchanged):
    _, escalation = ask(user="alice")
    old = [dict(escalation.inputs[0], options={"revise": "Revise", "publish": "Publish"}), escalation.inputs[1]]
    Escalation.objects.filter(pk=escalation.pk).update(inputs=old)
    scheduler.reply_to_escalation(escalation.pk, {"verdict": "publish", "sure": True}, "approved", user="alice")
    assert Job.objects.get(pk=escalation.job_id).output["value"]["verdict"] == "publish"
