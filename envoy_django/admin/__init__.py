"""The Envoy admin: jobs with their history and flow picture, and escalation approvals.

Importing this module (Django's admin autodiscovery does) registers
``JobAdmin``, ``EscalationAdmin``, ``ScheduleAdmin`` and the ``OverviewAdmin`` page on the default admin site.
"""

from envoy_django.admin.escalations import EscalationAdmin
from envoy_django.admin.jobs import JobAdmin
from envoy_django.admin.overview import OverviewAdmin
from envoy_django.admin.schedules import ScheduleAdmin

__all__ = ["EscalationAdmin", "JobAdmin", "OverviewAdmin", "ScheduleAdmin"]
