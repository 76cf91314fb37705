"""The one error hierarchy. A token Tessera refuses is not an error: it is a
`Validation` or `ClaimOutcome` whose `denial` says why, as in the proto. An
error means the request was bad, the caller is not allowed, or the call did
not complete.

Which failures a call retries is decided here, once: `retryable_if_idempotent`
for calls that may run twice (Validate, a keyed Claim, Revoke, reads) and
`provably_not_done` for those that may not (Mint, Rotate, Delegate).
"""

from __future__ import annotations

from typing import Optional

import grpc

# The messages gRPC's own channel gives an RPC that failed to *pick* a
# connection: it never left this process. grpc-core says so in these words
# (its pick_first / round_robin policies and its resolver); any other
# UNAVAILABLE may come after the request was sent (a connection cut
# mid-call), so the request may have been served.
_UNSENT_PREFIXES = (
    "failed to connect to all addresses",
    "DNS resolution failed",
    "empty address list",
    "no children in weighted_target policy",
)
# gRPC reports a reply over its size limit as RESOURCE_EXHAUSTED too: that
# reply was made, so the call was done.
_LOCAL_EXHAUSTION_PREFIX = "Received message larger than max"


class TesseraError(Exception):
    """Why a call failed. `code` is the gRPC status it stands for, if any."""

    code: Optional[grpc.StatusCode] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def retryable_if_idempotent(self) -> bool:
        """Whether trying again may succeed, for a call that does nothing more
        when done twice."""
        return False

    def provably_not_done(self) -> bool:
        """Whether the request provably did nothing: it never left, or Tessera
        shed it before running it. Only these are retried for Mint, Rotate and
        Delegate."""
        return False


class ConfigError(TesseraError, ValueError):
    """The client's settings are wrong (a bad URL, an unreadable CA file)."""


class ConnectError(TesseraError):
    """`Client.wait_ready` could not make a connection in time."""


class InvalidArgumentError(TesseraError):
    """The request was bad; Tessera names the field."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class UnauthenticatedError(TesseraError):
    """The client key is missing, malformed or unknown."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(TesseraError):
    """The client lacks the method's role."""

    code = grpc.StatusCode.PERMISSION_DENIED


class NotFoundError(TesseraError):
    """No such grant or credential for this client."""

    code = grpc.StatusCode.NOT_FOUND


class FailedPreconditionError(TesseraError):
    """The state forbids it (a grant rotated already, no seal key…)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(TesseraError):
    """A compare-and-set lost."""

    code = grpc.StatusCode.ABORTED


class OverloadedError(TesseraError):
    """Tessera shed the call: too many calls in flight. Nothing was done."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def retryable_if_idempotent(self) -> bool:
        return True

    def provably_not_done(self) -> bool:
        return True


class UnavailableError(TesseraError):
    """Tessera (or the network to it) failed. `unsent` is true when no
    connection could be made, so the request never left."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, *, unsent: bool) -> None:
        super().__init__(message)
        self.unsent = unsent

    def retryable_if_idempotent(self) -> bool:
        return True

    def provably_not_done(self) -> bool:
        return self.unsent


class DeadlineExceededError(TesseraError, TimeoutError):
    """The call's deadline passed (retries included), or one attempt's did.
    The request may have been served."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED

    def retryable_if_idempotent(self) -> bool:
        return True


class RpcError(TesseraError):
    """Any other gRPC status."""

    def __init__(self, message: str, *, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code

    def retryable_if_idempotent(self) -> bool:
        # CANCELLED: Tessera (past its --request-timeout) or a proxy gave up
        # on the call. It may have run, so only a call safe to repeat is
        # tried again.
        return self.code == grpc.StatusCode.CANCELLED


class ProtocolError(TesseraError):
    """Tessera's answer lacked a field it always sends."""


def from_rpc(error: grpc.RpcError) -> TesseraError:
    """The TesseraError for a failed call. grpcio raises `grpc.RpcError`s
    that carry `code()` and `details()` (a `grpc.Call`, or `grpc.aio.AioRpcError`)."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = (error.details() if callable(getattr(error, "details", None)) else None) or ""
    described = f"{code.name}: {details}" if details else code.name
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgumentError(details)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return UnauthenticatedError(details or "the client key is missing or unknown")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDeniedError(details)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(details or "not found")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPreconditionError(details)
    if code == grpc.StatusCode.ABORTED:
        return AbortedError(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and not details.startswith(_LOCAL_EXHAUSTION_PREFIX):
        return OverloadedError(f"Tessera is overloaded: {details}")
    if code == grpc.StatusCode.UNAVAILABLE:
        unsent = details.startswith(_UNSENT_PREFIXES)
        return UnavailableError(f"Tessera is unavailable: {details}", unsent=unsent)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceededError("deadline exceeded")
    return RpcError(f"Tessera answered {described}", code=code)
