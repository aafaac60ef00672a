"""The escalation list: a person's pending queue by default, everyone's and every status on request."""

from __future__ import annotations

import pytest

from envoy_django import scheduler
from envoy_django.admin.escalations import AssigneeFilter, StatusFilter

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/admin/envoy_django/escalation/"


def shown(response) -> set:
    assert response.status_code == 200
    return {escalation.pk for escalation in response.context["cl"].result_list}


def selected(response, filter_class) -> str:
    cl = response.context["cl"]
    spec = next(spec for spec in cl.filter_specs if isinstance(spec, filter_class))
    return next(choice["display"] for choice in spec.choices(cl) if choice["selected"])


@pytest.fixture
def queue(family):
    """Two pending escalations for alice, one for bob, one approved and one rejected for alice."""
    escalations = {
        "alice": family("alice")[1], "alice2": family("alice")[1], "bob": family("bob")[1],
        "approved": family("alice")[1], "rejected": family("alice", on_reject="continue")[1],
    }
    scheduler.reply_to_escalation(escalations["approved"].pk, {"reason": "a", "ok": True}, "approved", user="alice")
    scheduler.reply_to_escalation(escalations["rejected"].pk, {"reason": "b"}, "rejected", user="alice")
    return {name: escalation.pk for name, escalation in escalations.items()}


@pytest.fixture
def alice_client(make_user, login):
    return login(make_user("alice", "reply_escalation"))


def test_default_is_my_pending_escalations(alice_client, queue):
    response = alice_client.get(URL)
    assert shown(response) == {queue["alice"], queue["alice2"]}
    assert selected(response, AssigneeFilter) == "me or my groups"
    assert selected(response, StatusFilter) == "pending"


def test_all_users(alice_client, queue):
    response = alice_client.get(URL, {"assigned": "all"})
    assert shown(response) == {queue["alice"], queue["alice2"], queue["bob"]}
    assert selected(response, AssigneeFilter) == "everyone"


@pytest.mark.parametrize("status, names", [
    ("approved", {"approved"}),
    ("rejected", {"rejected"}),
    ("replied", {"approved", "rejected"}),
    ("all", {"alice", "alice2", "approved", "rejected"}),
])
def test_status_filter(alice_client, queue, status, names):
    assert shown(alice_client.get(URL, {"status": status})) == {queue[name] for name in names}


def test_cancelled(alice_client, queue, family):
    job_id, escalation = family("alice")
    scheduler.cancel_job(job_id)
    assert shown(alice_client.get(URL, {"status": "cancelled"})) == {escalation.pk}


def test_links_open_the_reply_page_and_the_job(alice_client, queue):
    html = alice_client.get(URL).content.decode()
    assert f'href="/admin/envoy_django/escalation/{queue["alice"]}/reply/">Approve this action?</a>' in html


def test_search_by_job_id_or_user(superuser_client, queue):
    from envoy_django.models import Escalation

    job_id = Escalation.objects.get(pk=queue["bob"]).job_id
    assert shown(superuser_client.get(URL, {"assigned": "all", "q": str(job_id)})) == {queue["bob"]}
    assert shown(superuser_client.get(URL, {"assigned": "all", "q": "bob"})) == {queue["bob"]}


def test_staff_without_any_escalation_permission_is_refused(make_user, login, queue):
    assert login(make_user("nobody")).get(URL).status_code == 403
