"""Bounded, deterministic retries with exponential backoff for association failures."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from simulators.errors import RtsimError

LOG = logging.getLogger(__name__)

T = TypeVar("T")


class AssociationFailedError(RtsimError):
    """No association could be established with a peer (refused, rejected, unreachable, timed out)."""


class PeerCommunicationError(RtsimError):
    """An association was established but the operation did not complete (abort, timeout)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` tries in all; the delay before try k+1 is ``first_delay_s * factor**(k-1)``, capped.

    No jitter: the same policy always waits the same times, so tests can assert them.
    """

    attempts: int = 4
    first_delay_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if self.first_delay_s < 0 or self.factor < 1 or self.max_delay_s < 0:
            raise ValueError(f"RetryPolicy: delays must be >= 0 and factor >= 1, got {self}")

    def delays_s(self) -> list[float]:
        """The waits between the attempts (``attempts - 1`` values)."""
        return [min(self.first_delay_s * self.factor**k, self.max_delay_s) for k in range(self.attempts - 1)]


NO_RETRY = RetryPolicy(attempts=1)


def call_with_retry(
    operation: Callable[[], T],
    policy: RetryPolicy,
    sleep: Callable[[float], object],
    what: str,
) -> T:
    """Run ``operation``; on :class:`AssociationFailedError` wait and try again, up to the policy's bound.

    The last failure is re-raised with one message naming what failed and how many attempts were made.
    Other exceptions pass through untouched (a DIMSE failure status is an answer, not a network fault).
    """
    delays = policy.delays_s()
    for attempt in range(1, policy.attempts + 1):
        try:
            return operation()
        except AssociationFailedError as exc:
            if attempt == policy.attempts:
                raise AssociationFailedError(
                    f"{what}: {exc} (gave up after {policy.attempts} attempt(s))"
                ) from None
            delay = delays[attempt - 1]
            LOG.warning(
                "%s: %s; retrying in %.2f s (attempt %d of %d)",
                what,
                exc,
                delay,
                attempt + 1,
                policy.attempts,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
