"""Retries: which calls, on which failures, and how long to wait.

| call | retried on |
|---|---|
| `validate`, `get_grant`, `list_grants` (reads) | UNAVAILABLE, deadline, RESOURCE_EXHAUSTED, CANCELLED |
| `claim` (always with a `claim_key`, made once per `claim()` call) | the same: a retry with the same key gets the original outcome and consumes nothing more |
| `revoke` (revoking twice revokes once) | the same; `revoked` counts what the last attempt revoked |
| `mint`, `delegate`, `rotate` | only when the request provably did nothing: no connection could be made, or Tessera shed the call (RESOURCE_EXHAUSTED) |

A Mint whose reply was lost (UNAVAILABLE after the request left, or a
deadline) may have minted: retrying it could mint a second token, and
retrying a Rotate that succeeded would fail and lose the new token. So those
errors are raised, never retried. Everything else (bad input, keys, roles,
NOT_FOUND) is raised at once. These are the Rust crate's rules (client/src/retry.rs).
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass

from .errors import DeadlineExceededError, TesseraError


@dataclass(frozen=True)
class RetryPolicy:
    """How a call is retried. The whole call, retries and waits included, is
    bounded by the client's timeout (`Client(timeout=…)`, `Client.with_timeout`)."""

    max_attempts: int = 5
    """Attempts in all, the first included (1 = never retry)."""
    attempt_timeout: float = 3.0
    """Seconds one attempt may take before it counts as lost (sent to Tessera
    as the call's `grpc-timeout`), within the call's timeout."""
    initial_backoff: float = 0.05
    """Seconds before the first retry; each next wait doubles, up to
    `max_backoff`. The actual wait is drawn uniformly from zero to that ("full
    jitter"), so a crowd of clients does not retry in step."""
    max_backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts: at least 1 (1 = never retry)")
        for name in ("attempt_timeout", "initial_backoff", "max_backoff"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative")
        if self.attempt_timeout == 0:
            raise ValueError("attempt_timeout: must be positive")

    @classmethod
    def none(cls) -> RetryPolicy:
        """Never retry."""
        return cls(max_attempts=1)

    def backoff(self, attempt: int) -> float:
        """The wait, in seconds, after failed attempt number `attempt` (1-based)."""
        cap = min(self.initial_backoff * (1 << min(max(attempt - 1, 0), 16)), self.max_backoff)
        return random.uniform(0, cap)


def claim_key() -> str:
    """A fresh `claim_key`: 32 random bytes, hex (64 characters)."""
    return secrets.token_hex(32)


class Attempts:
    """One call's attempts: how long each may take, and whether (and after
    how long a wait) a failure is tried again. The sync and asyncio clients
    run the same plan, each with its own sleep.

    The call's deadline bounds everything: an attempt gets what is left of it
    (at most `attempt_timeout`), and a wait that would end past it ends the
    call with the last error instead.
    """

    def __init__(self, timeout: float, policy: RetryPolicy, *, idempotent: bool) -> None:
        self._deadline = time.monotonic() + timeout
        self._policy = policy
        self._idempotent = idempotent
        self._attempt = 0

    def next_timeout(self) -> float:
        """The next attempt's timeout, in seconds; raises DeadlineExceededError
        when none is left."""
        self._attempt += 1
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceededError("deadline exceeded")
        return min(left, self._policy.attempt_timeout)

    def wait_after(self, error: TesseraError) -> float:
        """The wait before trying again after `error`; raises `error` when the
        call must not, or need not, be tried again."""
        again = error.retryable_if_idempotent() if self._idempotent else error.provably_not_done()
        if not again or self._attempt >= self._policy.max_attempts:
            raise error
        wait = self._policy.backoff(self._attempt)
        if time.monotonic() + wait >= self._deadline:
            raise error
        return wait
