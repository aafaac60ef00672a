"""A model call's text so far, published while the call runs, for the job page to show as it grows.

The provider streams the completion; every STEP seconds (and at the first
piece) the text so far goes into the Django cache ``ENVOY["STREAM_CACHE"]``
under the running job. The job page's status endpoint reads it back.
Nothing durable depends on it: the checkpoint stores the final message
once the call ends, a worker killed mid-stream repeats the call as before,
and a cache that is down only means nothing is shown (a DEBUG line).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.core.cache import caches

from envoy_django.conf import envoy_settings
from envoy_django.scheduler.current import running_job

log = logging.getLogger("envoy_django.streaming")

STEP = 0.2  # seconds between two publications of one call
KEEP = 300  # seconds a published text outlives a worker that died mid-call


def _key(job_id: Any) -> str:
    return f"envoy:stream:{job_id}"


class Publisher:
    """The text of one model call, published under the job running in this context (if any)."""

    def __init__(self) -> None:
        running = running_job()
        self.job_id = running.job.pk if running is not None else None
        self.last = 0.0
        self.text = ""
        self._later: threading.Timer | None = None  # writes what came within STEP of the last write
        self._lock = threading.Lock()

    def add(self, piece: str) -> None:
        if not piece:
            return
        with self._lock:
            self.text += piece
            if self.job_id is None:
                return
            wait = STEP - (time.monotonic() - self.last)
            if wait <= 0:
                self._write_now()
            elif self._later is None:
                # The model may pause here (a tool call forming, a slow token): show what came, soon.
                self._later = threading.Timer(wait, self._write_later)
                self._later.daemon = True
                self._later.start()

    def _write_later(self) -> None:
        with self._lock:
            if self._later is not None:
                self._later = None
                self._write_now()

    def _write_now(self) -> None:
        self.last = time.monotonic()
        self._write(self.text)

    def close(self) -> None:
        """The call ended: the checkpoint will hold the message; the partial text goes."""
        with self._lock:
            if self._later is not None:
                self._later.cancel()
                self._later = None
        if self.job_id is not None and self.last:
            try:
                caches[envoy_settings.STREAM_CACHE].delete(_key(self.job_id))
            except Exception as exc:
                log.debug("job %s: could not clear its streamed text: %s", self.job_id, exc)

    def _write(self, text: str) -> None:
        try:
            caches[envoy_settings.STREAM_CACHE].set(_key(self.job_id), text, KEEP)
        except Exception as exc:
            log.debug("job %s: could not publish its streamed text: %s", self.job_id, exc)


def streamed_text(job_id: Any) -> str | None:
    """What the running model call of ``job_id`` has said so far, or None."""
    try:
        text = caches[envoy_settings.STREAM_CACHE].get(_key(job_id))
    except Exception as exc:
        log.debug("job %s: could not read its streamed text: %s", job_id, exc)
        return None
    return text if isinstance(text, str) else None
