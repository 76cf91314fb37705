"""Which failures are retried, the waits between attempts, and claim keys:
the rules themselves, without a server."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from tessera_client import (
    DeadlineExceededError,
    InvalidArgumentError,
    OverloadedError,
    RetryPolicy,
    RpcError,
    UnavailableError,
)
from tessera_client.errors import from_rpc
from tessera_client.retry import Attempts, claim_key


class Failed(grpc.RpcError, grpc.Call):
    """What grpcio raises: an RpcError that is also a Call."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> Any: return None
    def trailing_metadata(self) -> Any: return None
    def is_active(self) -> bool: return False
    def time_remaining(self) -> Any: return None
    def cancel(self) -> bool: return False
    def add_callback(self, callback: Any) -> bool: return False


@pytest.mark.parametrize("code, details, kind, idempotent_retry, not_done", [
    (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: Connection refused",
     UnavailableError, True, True),
    (grpc.StatusCode.UNAVAILABLE, "Socket closed", UnavailableError, True, False),
    (grpc.StatusCode.UNAVAILABLE, "database unreachable", UnavailableError, True, False),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "server overloaded; retry with backoff", OverloadedError, True, True),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (5 vs. 4)", RpcError, False, False),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", DeadlineExceededError, True, False),
    (grpc.StatusCode.CANCELLED, "request timed out", RpcError, True, False),
    (grpc.StatusCode.INVALID_ARGUMENT, "scopes: bad", InvalidArgumentError, False, False),
    (grpc.StatusCode.INTERNAL, "boom", RpcError, False, False),
])
def test_statuses_map_to_errors(code: grpc.StatusCode, details: str, kind: type, idempotent_retry: bool,
                                not_done: bool) -> None:
    error = from_rpc(Failed(code, details))
    assert type(error) is kind and error.code == code
    assert error.retryable_if_idempotent() is idempotent_retry
    assert error.provably_not_done() is not_done


def test_an_error_not_retried_is_raised_at_once() -> None:
    attempts = Attempts(10, RetryPolicy(), idempotent=False)
    attempts.next_timeout()
    with pytest.raises(UnavailableError):
        attempts.wait_after(UnavailableError("Socket closed", unsent=False))
    attempts = Attempts(10, RetryPolicy(max_attempts=2), idempotent=True)
    error = UnavailableError("Socket closed", unsent=False)
    attempts.next_timeout()
    assert attempts.wait_after(error) <= RetryPolicy().initial_backoff
    attempts.next_timeout()
    with pytest.raises(UnavailableError):
        attempts.wait_after(error)


def test_an_attempt_gets_at_most_what_is_left() -> None:
    attempts = Attempts(0.5, RetryPolicy(attempt_timeout=3), idempotent=True)
    assert 0 < attempts.next_timeout() <= 0.5
    spent = Attempts(-1, RetryPolicy(), idempotent=True)
    with pytest.raises(DeadlineExceededError):
        spent.next_timeout()


def test_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy()
    for attempt in range(1, 40):
        cap = min(policy.initial_backoff * 2 ** min(attempt - 1, 16), policy.max_backoff)
        assert 0 <= policy.backoff(attempt) <= cap
    assert len({policy.backoff(5) for _ in range(20)}) > 1, "jitter varies the wait"
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_claim_keys_are_fresh() -> None:
    a, b = claim_key(), claim_key()
    assert len(a) == 64 and all(c in "0123456789abcdef" for c in a) and a != b
