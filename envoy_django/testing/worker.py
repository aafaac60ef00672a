"""Run queued Envoy jobs inside a test, without worker processes.

``drain()`` works the Envoy queue with an in-process RQ worker until it is
empty, so a test can use ``EXECUTION = "rq"`` (with Redis or fakeredis) and
then assert on the finished jobs.
"""

from __future__ import annotations


def drain(max_rounds: int = 100, queue_names: list[str] | None = None) -> int:
    """Work the Envoy queue (or ``queue_names``) until no message is left; return how many rounds it took.

    A round is one burst of the worker; jobs that enqueue further work
    (children, resumed parents) are picked up by the next round.
    """
    from envoy_django.dispatch.rq_queue import get_queue
    from envoy_django.worker import get_worker

    queues = [get_queue(name) for name in queue_names] if queue_names else [get_queue()]
    for round_number in range(1, max_rounds + 1):
        if not any(queue.count for queue in queues):
            return round_number - 1
        get_worker(queue_names).work(burst=True, with_scheduler=False, logging_level="WARNING")
    left = sum(queue.count for queue in queues)
    raise AssertionError(f"the Envoy queues still held {left} messages after {max_rounds} rounds")
