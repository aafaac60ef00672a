"""Every error envoy-django raises, in one namespace.

Pure Python: the flow engine imports this module, so it must not import Django.
Each message names the job, state, wait or field at fault; the docstring of a
class is the message used when none is given.
"""

from __future__ import annotations

import datetime as dt


class EnvoyError(Exception):
    """An envoy-django operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


# --- flow definition and execution (raised by the pure engine) -------------


class FlowDefinitionError(EnvoyError, ValueError):
    """The flow definition is invalid."""


class FlowError(EnvoyError):
    """The flow engine stopped on an error that running again cannot fix.

    Unknown routes, a handler returning something other than the context,
    values that are not JSON, a wait inside ``run()``. The scheduler fails the
    job at once instead of retrying.
    """


class PayloadError(FlowError, TypeError):
    """A value in the context is not JSON-serializable."""


class WaitInRunError(FlowError):
    """A state waited, spawned or escalated inside ``run()``."""


class HandlerError(EnvoyError):
    """A handler raised; the scheduler retries the phase.

    The original exception is ``__cause__`` and ``original``.
    """

    def __init__(
        self,
        state: str,
        handler: str,
        original: BaseException,
        phase: str | None = None,
        *,
        step: int | None = None,
        input: object = None,
    ) -> None:
        self.state = state
        self.handler = handler
        self.original = original
        # Where the history records the failure: the phase (enter, state, exit
        # or route), and the step number and input of the state it failed in.
        self.phase = phase
        self.step = step
        self.input = input
        super().__init__(
            f"{handler} of state {state!r} raised {type(original).__name__}: {original}"
        )


# --- scheduler ---------------------------------------------------------------


class InvalidArgumentError(EnvoyError, ValueError):
    """An argument to an envoy-django call has the wrong type or does not fit its column."""


class IdempotencyConflictError(EnvoyError):
    """The idempotency key already belongs to a job of another flow or with other input."""

    def __init__(self, message: str | None = None, *, job_id: str | None = None) -> None:
        self.job_id = job_id  # the job that holds the key
        super().__init__(message)


class MissingExtraError(EnvoyError, ImportError):
    """A feature needs a package that was not installed with envoy-django."""

    def __init__(self, extra: str, feature: str) -> None:
        self.extra = extra
        super().__init__(f"{feature} needs envoy-django's [{extra}] extra: pip install 'envoy-django[{extra}]'")


class NotReadyError(EnvoyError):
    """envoy-django was used before Django's app registry was ready."""


class UnknownFlowError(EnvoyError, LookupError):
    """No flow is registered under that name."""


class UnknownFlowVersionError(UnknownFlowError):
    """The flow is registered, but not in that version."""


class JobNotFoundError(EnvoyError, LookupError):
    """No job has that id."""


class WaitNotFoundError(EnvoyError, LookupError):
    """The job has no wait with that id."""


class JobStateError(EnvoyError):
    """The job or wait is not in a state that allows this operation."""


class EscalationNotFoundError(EnvoyError, LookupError):
    """No escalation has that id."""


class EscalationError(EnvoyError, ValueError):
    """The escalation or the reply to it is invalid."""


class EscalationAlreadyRepliedError(EscalationError):
    """The escalation was already answered."""


class PayloadTooLargeError(PayloadError, ValueError):
    """A payload is larger than ENVOY['MAX_PAYLOAD_BYTES']."""


class LeaseLostError(EnvoyError):
    """Another worker or an operator took the job while this worker ran it."""


class RateLimitedError(EnvoyError):
    """A call was over its rate limit (``ENVOY["RATE_LIMITS"]``).

    Raised in a handler, it does not fail the attempt: the scheduler puts
    the job back to pending until ``retry_at``, when the limit has room.
    """

    def __init__(self, name: str, rate: str, retry_at: dt.datetime) -> None:
        self.name = name
        self.rate = rate
        self.retry_at = retry_at
        super().__init__(f"rate limit {name!r} ({rate}) reached; next call at {retry_at:%Y-%m-%d %H:%M:%S} UTC")
