"""Who an escalation asks: a user, a group, or both, as Django's auth knows them.

An escalation to somebody who does not exist would wait in nobody's list;
the executor refuses it (``missing``) before it is created. Any holder of
the reply permission who is the user asked or a member of the group asked
may answer (``may_answer``); superusers always may.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import Q

REPLY_PERMISSION = "envoy_django.reply_escalation"


def missing(user: str, group: str) -> str | None:
    """``"user 'bob', who does not exist"`` if an assignee is unknown; None when all exist."""
    if not apps.is_installed("django.contrib.auth"):
        return None
    problems = []
    if user:
        model = get_user_model()
        if not model._default_manager.filter(**{model.USERNAME_FIELD: user}).exists():
            problems.append(f"user {user!r}, who does not exist")
    if group:
        from django.contrib.auth.models import Group

        if not Group.objects.filter(name=group).exists():
            problems.append(f"group {group!r}, which does not exist")
    return " and ".join(problems) or None


def group_names(user: Any) -> list[str]:
    if not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        return []
    return list(user.groups.values_list("name", flat=True))


def assigned_to(user: Any) -> Q:
    """Escalations asking ``user`` by name or through one of their groups."""
    mine = Q(user=user.get_username())
    groups = group_names(user)
    return mine | Q(group__in=groups) if groups else mine


def may_answer(user: Any, escalation: Any) -> bool:
    if user.is_superuser:
        return True
    if not user.has_perm(REPLY_PERMISSION):
        return False
    if escalation.user and escalation.user == user.get_username():
        return True
    return bool(escalation.group) and escalation.group in group_names(user)
