"""Bounded deterministic backoff; the stop token of a delivery."""

from __future__ import annotations

import pytest

from simulators.dicom.tdd.delivery import StopToken
from simulators.dicom.tdd.retry import (
    AssociationFailedError,
    PeerCommunicationError,
    RetryPolicy,
    call_with_retry,
)


def test_delays_double_and_cap():
    assert RetryPolicy(attempts=5, first_delay_s=0.5, factor=2, max_delay_s=3).delays_s() == [
        0.5,
        1.0,
        2.0,
        3.0,
    ]
    assert RetryPolicy(attempts=1).delays_s() == []
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def test_association_failures_are_retried_until_success():
    sleeps: list[float] = []
    calls = iter([AssociationFailedError("refused"), AssociationFailedError("refused"), "ok"])

    def operation():
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert call_with_retry(operation, RetryPolicy(attempts=3, first_delay_s=1), sleeps.append, "x") == "ok"
    assert sleeps == [1.0, 2.0]


def test_last_failure_names_what_and_the_attempts():
    sleeps: list[float] = []

    def operation():
        raise AssociationFailedError("RO-63 store: OST@127.0.0.1:1: no association")

    with pytest.raises(AssociationFailedError) as caught:
        call_with_retry(operation, RetryPolicy(attempts=2, first_delay_s=0.25), sleeps.append, "RO-63 store")
    assert str(caught.value) == (
        "RO-63 store: RO-63 store: OST@127.0.0.1:1: no association (gave up after 2 attempt(s))"
    )
    assert sleeps == [0.25]


def test_other_failures_are_not_retried():
    sleeps: list[float] = []

    def operation():
        raise PeerCommunicationError("aborted")

    with pytest.raises(PeerCommunicationError):
        call_with_retry(operation, RetryPolicy(attempts=4), sleeps.append, "x")
    assert sleeps == []


def test_stop_token_delivers_an_early_request_at_bind_and_keeps_the_first():
    token = StopToken()
    assert token.request("OPERATOR", "UPS-CANCEL", "cancel requested")
    assert not token.request("MACHINE", "X")
    seen = []
    token.bind(lambda status, code: seen.append((status, code)))
    assert seen == [("OPERATOR", "UPS-CANCEL")]
    assert token.requested
    assert token.reason == "cancel requested"


def test_stop_token_survives_a_failing_handler():
    token = StopToken()
    seen = []
    token.bind(lambda s, c: 1 / 0)
    token.bind(lambda s, c: seen.append(s))
    token.request("OPERATOR")
    assert seen == ["OPERATOR"]
