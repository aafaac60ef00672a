"""Rate limits shared by every worker: ``ENVOY["RATE_LIMITS"] = {"openai": "60/m"}``.

A handler (or the ``ToolAgent``, with ``rate_limit="openai"``) calls
``acquire("openai")`` before the call it limits. Over the limit, it raises
``RateLimitedError``; the scheduler then puts the job back to pending with
``run_after`` at the start of the next window, so no worker sleeps on a
limit, and the admin shows why the job waits.

The counts live in the Django cache named by ``ENVOY["RATE_LIMIT_CACHE"]``
(django-redis in production, so every worker process on every machine
shares them; the local-memory cache serves one process, enough for the
embedded default). Each limit counts calls in fixed windows
(``cache.add`` then the atomic ``cache.incr``): at most N calls start in
any one window, so across a window boundary up to 2N can start within one
window's length. If the cache is unreachable, the call goes ahead (and a
WARNING says so): a limit that fails closed would strand every job behind it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from dataclasses import dataclass

from django.core.cache import caches

from envoy_django.conf import envoy_settings
from envoy_django.exceptions import InvalidArgumentError, RateLimitedError
from envoy_django.flow.values import short_repr

log = logging.getLogger("envoy_django.ratelimits")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")


@dataclass(frozen=True)
class Rate:
    """``calls`` per ``seconds``, parsed from ``"60/m"``, ``"10/s"``, ``"1000/h"``, ``"5/10s"``, ``"20000/d"``."""

    calls: int
    seconds: int
    text: str

    @classmethod
    def parse(cls, text: object, where: str) -> Rate:
        match = _RATE.match(text) if isinstance(text, str) else None
        if match is None or int(match[1]) < 1 or match[2] == "0":
            raise InvalidArgumentError(
                f"{where} must be a rate like '60/m', '10/s', '5/10s' (calls / [count] s, m, h or d), "
                f"got {short_repr(text)}")
        return cls(int(match[1]), int(match[2] or 1) * _UNITS[match[3]], str(text).strip())


def rate(name: str) -> Rate:
    """The rate configured for ``name``; an ``InvalidArgumentError`` naming it if there is none or it is bad."""
    limits = envoy_settings.RATE_LIMITS or {}
    if not isinstance(name, str) or name not in limits:
        known = ", ".join(map(repr, sorted(limits))) or "none"
        raise InvalidArgumentError(f"no rate limit named {short_repr(name)} in ENVOY['RATE_LIMITS'] (known: {known})")
    return Rate.parse(limits[name], f"ENVOY['RATE_LIMITS'][{name!r}]")


def _now() -> float:
    """Seconds since the epoch: windows are aligned to it, so every process agrees on them."""
    return time.time()


def acquire(name: str) -> None:
    """Count one call against the rate limit ``name``; ``RateLimitedError`` (with ``retry_at``) when over it."""
    limit = rate(name)
    now = _now()
    window = int(now // limit.seconds)
    key = f"envoy:rate:{name}:{limit.seconds}:{window}"
    cache = caches[envoy_settings.RATE_LIMIT_CACHE]
    try:
        cache.add(key, 0, timeout=limit.seconds + 60)
        try:
            count = cache.incr(key)
        except ValueError:  # the window's key expired between add and incr
            cache.add(key, 1, timeout=limit.seconds + 60)
            count = 1
    except Exception as exc:  # the cache is down: let the call through rather than strand the job
        log.warning("rate limit %r: the cache is unreachable (%s: %s); not limiting this call",
                    name, type(exc).__name__, exc)
        return
    if count > limit.calls:
        retry_at = dt.datetime.fromtimestamp((window + 1) * limit.seconds, tz=dt.UTC)
        raise RateLimitedError(name, limit.text, retry_at)
