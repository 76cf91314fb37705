"""The client: connection settings, per-call deadlines, and the one retry
loop that every method goes through."""

from __future__ import annotations

import collections
import copy
import os
import time
from typing import Any, Callable, Mapping, Optional, TypeVar

import grpc

from . import _channel
from ._proto import authority_pb2 as pb
from ._proto import authority_pb2_grpc, credentials_pb2_grpc
from .errors import ConnectError, ProtocolError, TesseraError, from_rpc
from .requests import (
    Claim,
    ClaimOutcome,
    Delegate,
    GrantPage,
    ListGrants,
    Mint,
    Minted,
    Revoke,
    Rotate,
    Rotated,
    Validate,
    Validation,
)
from .retry import Attempts, RetryPolicy, claim_key
from .secret import Token


def positive(value: float, name: str) -> float:
    if not value > 0:
        raise ValueError(f"{name}: must be a positive number of seconds")
    return float(value)


Self = TypeVar("Self", bound="BaseClient")


class BaseClient:
    """What the sync and asyncio clients share: checked settings, the call
    timeout and the retry policy, `from_env`, the copies and a `repr` that
    names no secret."""

    def __init__(
        self,
        url: str = _channel.DEFAULT_URL,
        *,
        key: Optional[str] = None,
        ca_file: Optional[_channel.PathLike] = None,
        ca_pem: Optional[bytes] = None,
        client_cert: Optional[tuple[bytes, bytes]] = None,
        tls_domain: Optional[str] = None,
        timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self._settings = _channel.settings(
            url, key=key, ca_file=ca_file, ca_pem=ca_pem, client_cert=client_cert, tls_domain=tls_domain
        )
        self._timeout = positive(timeout, "timeout")
        self._retry = retry
        self._open()

    def _open(self) -> None:
        """Makes the channel (lazily connected) and the stub."""
        raise NotImplementedError

    @classmethod
    def from_env(cls: type[Self], environ: Optional[Mapping[str, str]] = None, **settings: Any) -> Self:
        """A client as the environment says: `TESSERA_URL` (default
        `http://127.0.0.1:50051`), `TESSERA_KEY` (the client key, if any) and
        `TESSERA_CA` (a PEM file of the CA that signed Tessera's certificate,
        for an https:// URL); empty is unset. Keyword arguments are passed on
        (`timeout=…`) and win over the environment."""
        found = _channel.from_environ(os.environ if environ is None else environ)
        return cls(**{**found, **settings})

    @property
    def url(self) -> str:
        """The URL this client calls."""
        return self._settings.url

    @property
    def timeout(self) -> float:
        """The bound on each call, in seconds, retries included."""
        return self._timeout

    def __repr__(self) -> str:
        key = "<redacted>" if self._settings.key else None
        return f"{type(self).__name__}(url={self.url!r}, key={key}, timeout={self._timeout!r}, retry={self._retry!r})"

    __str__ = __repr__

    def with_timeout(self: Self, timeout: float) -> Self:
        """The same client (same connection), whose calls each end within
        `timeout` seconds, retries and waits between them included."""
        clone = copy.copy(self)
        clone._timeout = positive(timeout, "timeout")
        return clone

    def with_retry(self: Self, policy: RetryPolicy) -> Self:
        """The same client (same connection), retrying as `policy` says."""
        clone = copy.copy(self)
        clone._retry = policy
        return clone


class Client(BaseClient):
    """A Tessera client: safe to share across threads; copies made by
    `with_timeout` and `with_retry` share its one connection.

    `url` is `http://host:port`, or `https://host:port` for TLS (trusting
    `ca_file` / `ca_pem`, else gRPC's own roots); a bare `host:port` means
    http. `key` is the client key (`tsk_…`); none is needed by a Tessera in
    dev mode. `client_cert` is `(certificate PEM, key PEM)` for mTLS;
    `tls_domain` verifies Tessera's certificate for that name instead of the
    URL's host.

    Every call ends within `timeout` seconds (10 unless set), retries and
    waits included, and is retried as `RetryPolicy` describes. The channel
    connects on the first call (and again whenever the connection drops);
    `wait_ready()` connects now.
    """

    def _open(self) -> None:
        settings = self._settings
        if settings.tls is not None:
            self._channel = grpc.secure_channel(settings.target, settings.tls, options=settings.options())
        else:
            self._channel = grpc.insecure_channel(settings.target, options=settings.options())
        self._stub = authority_pb2_grpc.TokenAuthorityStub(self._channel)

    def wait_ready(self, timeout: float = 5.0) -> None:
        """Connects now; raises ConnectError if Tessera cannot be reached
        within `timeout` seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=positive(timeout, "timeout"))
        except grpc.FutureTimeoutError:
            raise ConnectError(_channel.unreachable(self._settings, timeout)) from None

    def close(self) -> None:
        """Closes the connection, for this client and every copy of it."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The calls.

    def mint(self, mint: Mint) -> Minted:
        """Issues a token (role `mint`). Retried only when it provably did
        nothing: a lost reply is an error, never a second token."""
        answer: pb.MintResponse = self._call(self._stub.Mint, mint.to_pb(), idempotent=False)
        return Minted(token=Token(answer.token), grant=grant_of(answer, "Mint"))

    def validate(self, validate: Validate) -> Validation:
        """Checks a token without consuming it (role `validate`). A refusal is
        a Validation with `valid` False, not an error."""
        return Validation.from_pb(self._call(self._stub.Validate, validate.to_pb(), idempotent=True))

    def claim(self, claim: Claim) -> ClaimOutcome:
        """Consumes one use of a token (role `claim`). Each call sends a
        `claim_key` (a fresh random one unless the Claim has one) and reuses
        it on every retry, so a lost reply is retried without consuming a
        second use: the retry gets the original answer."""
        request = claim.to_pb()
        if not request.claim_key:
            request.claim_key = claim_key()
        return ClaimOutcome.from_pb(self._call(self._stub.Claim, request, idempotent=True))

    def revoke(self, revoke: Revoke) -> int:
        """Revokes a grant, a run or a subject (role `revoke`); returns how
        many live grants were revoked. Retried (revoking twice revokes once):
        after a lost reply the count is the last attempt's, possibly 0."""
        answer: pb.RevokeResponse = self._call(self._stub.Revoke, revoke.to_pb(), idempotent=True)
        return answer.revoked

    def get_grant(self, grant_id: str) -> pb.Grant:
        """One grant by its id (NotFoundError if this client may not see it)."""
        answer = self._call(self._stub.GetGrant, pb.GetGrantRequest(grant_id=grant_id), idempotent=True)
        return grant_of(answer, "GetGrant")

    def list_grants(self, query: ListGrants = ListGrants()) -> GrantPage:
        """One page of grants."""
        answer: pb.ListGrantsResponse = self._call(self._stub.ListGrants, query.to_pb(), idempotent=True)
        return page_of(answer)

    def rotate(self, rotate: Rotate) -> Rotated:
        """Replaces a grant with a successor and a new token (role `mint`).
        Retried only when it provably did nothing: a grant rotates once, so a
        retry after a lost reply would fail and lose the new token."""
        answer: pb.RotateResponse = self._call(self._stub.Rotate, rotate.to_pb(), idempotent=False)
        return rotated_of(answer)

    def delegate(self, delegate: Delegate) -> Minted:
        """Issues a sub-agent a token that can do no more than its parent
        (role `mint`). Retried like `mint`."""
        answer: pb.DelegateResponse = self._call(self._stub.Delegate, delegate.to_pb(), idempotent=False)
        return Minted(token=Token(answer.token), grant=grant_of(answer, "Delegate"))

    def credentials(self) -> credentials_pb2_grpc.CredentialsStub:
        """The generated `tessera.v1.Credentials` stub over this client's
        connection, with its key on every call. Its calls are not retried and
        have no deadline unless you pass `timeout=`."""
        channel = grpc.intercept_channel(self._channel, KeyInterceptor(self._settings.metadata()))
        return credentials_pb2_grpc.CredentialsStub(channel)

    def _call(self, method: Callable[..., Any], request: Any, *, idempotent: bool) -> Any:
        """The one retry loop: each attempt carries its deadline (sent as
        `grpc-timeout`) and the key."""
        attempts = Attempts(self._timeout, self._retry, idempotent=idempotent)
        metadata = self._settings.metadata()
        while True:
            timeout = attempts.next_timeout()
            try:
                return method(request, timeout=timeout, metadata=metadata)
            except grpc.RpcError as failure:
                error: TesseraError = from_rpc(failure)
                error.__cause__ = failure
            time.sleep(attempts.wait_after(error))


def grant_of(answer: Any, call: str) -> pb.Grant:
    if not answer.HasField("grant"):
        raise ProtocolError(f"malformed answer from Tessera: {call} without a grant")
    grant: pb.Grant = answer.grant
    return grant


def page_of(answer: pb.ListGrantsResponse) -> GrantPage:
    return GrantPage(
        grants=list(answer.grants),
        next_page_token=answer.next_page_token or None,
        active_count=answer.active_count,
    )


def rotated_of(answer: pb.RotateResponse) -> Rotated:
    if not answer.HasField("previous"):
        raise ProtocolError("malformed answer from Tessera: Rotate without the previous grant")
    return Rotated(token=Token(answer.token), grant=grant_of(answer, "Rotate"), previous=answer.previous)


class KeyInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Puts the client key on each Credentials call."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def __repr__(self) -> str:
        return "KeyInterceptor(<redacted>)"

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = tuple(details.metadata or ()) + self._metadata
        with_key = _CallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready, details.compression
        )
        return continuation(with_key, request)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    """A call's details with the key added (gRPC's own class is private)."""
