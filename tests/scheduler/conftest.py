import pytest

from envoy_django.models import Escalation, Job, Step, Wait


def snapshot_rows() -> dict:
    """Every row the scheduler writes, to prove a failed call changed none."""
    return {
        model.__name__: sorted((str(row.pop("id")), row) for row in model.objects.values())
        for model in (Job, Step, Wait, Escalation)
    }


@pytest.fixture
def unchanged():
    """``with unchanged(): ...`` asserts the block left every row as it was."""
    from contextlib import contextmanager

    @contextmanager
    def check():
        before = snapshot_rows()
        yield
        assert snapshot_rows() == before

    return check
