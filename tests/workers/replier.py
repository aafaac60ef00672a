"""A process that answers the same escalations (or resolves the same waits) as another, in step with it.

    python tests/workers/replier.py BARRIER_DIR ME approve|resolve ID...

Before each round it waits until every replier reached that round (a file
per replier in BARRIER_DIR), then answers; it prints one JSON list of
outcomes, "won" or "lost". The database and execution mode come from
ENVOY_TEST_DB_NAME and ENVOY_TEST_EXECUTION, as for worker processes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPLIERS = 2


def answer(kind: str, target: str, who: str) -> str:
    """Approve escalation ``target``, or resolve ``"job:wait"``: "won", or "lost" to an earlier answer."""
    from envoy_django import scheduler
    from envoy_django.exceptions import EscalationAlreadyRepliedError, JobStateError

    try:
        if kind == "approve":
            scheduler.reply_to_escalation(target, {"reason": "a"}, "approved", user=who)
        else:
            job_id, wait_id = target.split(":")
            scheduler.resolve_blocking_job(job_id, wait_id, {"by": who})
        return "won"
    except (EscalationAlreadyRepliedError, JobStateError):
        return "lost"


def main(barrier: Path, me: str, kind: str, ids: list[str]) -> None:
    outcomes = []
    for number, target in enumerate(ids):
        (barrier / f"{number}.{me}").touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.glob(f"{number}.*"))) < REPLIERS:
            if time.monotonic() > deadline:
                raise SystemExit(f"round {number}: the other replier never came")
            time.sleep(0.0005)
        outcomes.append(answer(kind, target, me))
    print(json.dumps(outcomes))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:])
