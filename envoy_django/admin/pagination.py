"""Changelist pagination that never counts a whole table.

Django's admin asks its paginator for ``count`` on every changelist view: a
COUNT(*) over every matching row, which takes seconds on a million jobs.
``EstimatedCountPaginator`` counts exactly only up to a bound just past the
page asked for (a LIMITed count that reads at most a few thousand index
entries), and beyond it reports PostgreSQL's planner estimate (EXPLAIN reads
ANALYZE statistics and runs nothing) or, on other databases, the bound as a
lower bound, so the next page is always reachable.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.admin.views.main import PAGE_VAR
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

EXACT = "exact"
ESTIMATE = "estimate"
AT_LEAST = "at least"


def planner_estimate(queryset: QuerySet) -> int | None:
    """PostgreSQL's estimate of the rows ``queryset`` matches, without running it."""
    if connections[queryset.db].vendor != "postgresql":
        return None
    plan = json.loads(queryset.order_by().explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    """Exact counts for small results, estimates for large ones.

    ``count_kind`` says which the ``count`` is: ``"exact"``, ``"estimate"``
    or ``"at least"``; the changelist's pagination template shows it.
    """

    exact_up_to = 1000

    def __init__(self, object_list: Any, per_page: int, orphans: int = 0,
                 allow_empty_first_page: bool = True, *, page_number: int = 1) -> None:
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        self.page_number = max(page_number, 1)
        self.count_kind = EXACT

    @cached_property
    def count(self) -> int:
        if not isinstance(self.object_list, QuerySet):
            return super().count
        # Enough to show this page and know whether there is a next one.
        bound = max(self.exact_up_to, (self.page_number + 1) * self.per_page) + 1
        counted = self.object_list[:bound].count()
        if counted < bound:
            return counted
        estimate = planner_estimate(self.object_list)
        if estimate is not None and estimate > counted:
            self.count_kind = ESTIMATE
            return estimate
        self.count_kind = AT_LEAST
        return counted


def requested_page(request: HttpRequest) -> int:
    """The changelist page number the way ``ChangeList`` reads it."""
    try:
        return int(request.GET.get(PAGE_VAR, 1))
    except ValueError:
        return 1


class EstimatedCountMixin:
    """For a ModelAdmin whose table may hold millions of rows."""

    show_full_result_count = False
    paginator: type[Paginator] = EstimatedCountPaginator

    def get_paginator(self, request: HttpRequest, queryset: QuerySet, per_page: int,
                      orphans: int = 0, allow_empty_first_page: bool = True) -> EstimatedCountPaginator:
        return EstimatedCountPaginator(queryset, per_page, orphans, allow_empty_first_page,
                                       page_number=requested_page(request))
