"""`AsyncClient`: the same client on asyncio (`grpc.aio`), for agent runtimes
and servers that run on an event loop. Same settings, same typed requests and
answers, same retry plan (`retry.Attempts`) and errors; only the waits are
`await`ed. Make it inside a running event loop."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import grpc
import grpc.aio

from . import _channel
from ._proto import authority_pb2 as pb
from ._proto import authority_pb2_grpc, credentials_pb2_grpc
from .client import BaseClient, grant_of, page_of, positive, rotated_of
from .errors import ConnectError, TesseraError, from_rpc
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
from .retry import Attempts, claim_key
from .secret import Token


class AsyncClient(BaseClient):
    """A Tessera client for asyncio. Takes what `Client` takes; its calls
    are coroutines with the same deadlines and retries. Copies made by
    `with_timeout` and `with_retry` share its one connection."""

    def _open(self) -> None:
        settings = self._settings
        # The key goes on every call through the channel's interceptor, so the
        # generated Credentials stub over the same channel carries it too.
        interceptors = [_AioKeyInterceptor(settings.metadata())] if settings.key else None
        if settings.tls is not None:
            self._channel = grpc.aio.secure_channel(
                settings.target, settings.tls, options=settings.options(), interceptors=interceptors
            )
        else:
            self._channel = grpc.aio.insecure_channel(
                settings.target, options=settings.options(), interceptors=interceptors
            )
        self._stub = authority_pb2_grpc.TokenAuthorityStub(self._channel)

    async def wait_ready(self, timeout: float = 5.0) -> None:
        """Connects now; raises ConnectError if Tessera cannot be reached
        within `timeout` seconds."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), positive(timeout, "timeout"))
        except asyncio.TimeoutError:
            raise ConnectError(_channel.unreachable(self._settings, timeout)) from None

    async def close(self) -> None:
        """Closes the connection, for this client and every copy of it."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def mint(self, mint: Mint) -> Minted:
        """Issues a token (role `mint`); retried only when provably not done."""
        answer: pb.MintResponse = await self._call(self._stub.Mint, mint.to_pb(), idempotent=False)
        return Minted(token=Token(answer.token), grant=grant_of(answer, "Mint"))

    async def validate(self, validate: Validate) -> Validation:
        """Checks a token without consuming it (role `validate`)."""
        return Validation.from_pb(await self._call(self._stub.Validate, validate.to_pb(), idempotent=True))

    async def claim(self, claim: Claim) -> ClaimOutcome:
        """Consumes one use of a token (role `claim`), with a claim key made
        once for this call (unless the Claim has one) and sent on each retry."""
        request = claim.to_pb()
        if not request.claim_key:
            request.claim_key = claim_key()
        return ClaimOutcome.from_pb(await self._call(self._stub.Claim, request, idempotent=True))

    async def revoke(self, revoke: Revoke) -> int:
        """Revokes a grant, a run or a subject (role `revoke`); how many."""
        answer: pb.RevokeResponse = await self._call(self._stub.Revoke, revoke.to_pb(), idempotent=True)
        return answer.revoked

    async def get_grant(self, grant_id: str) -> pb.Grant:
        """One grant by its id (NotFoundError if this client may not see it)."""
        request = pb.GetGrantRequest(grant_id=grant_id)
        return grant_of(await self._call(self._stub.GetGrant, request, idempotent=True), "GetGrant")

    async def list_grants(self, query: ListGrants = ListGrants()) -> GrantPage:
        """One page of grants."""
        return page_of(await self._call(self._stub.ListGrants, query.to_pb(), idempotent=True))

    async def rotate(self, rotate: Rotate) -> Rotated:
        """Replaces a grant with a successor (role `mint`); retried only when
        provably not done."""
        return rotated_of(await self._call(self._stub.Rotate, rotate.to_pb(), idempotent=False))

    async def delegate(self, delegate: Delegate) -> Minted:
        """A sub-agent's token (role `mint`); retried only when provably not done."""
        answer: pb.DelegateResponse = await self._call(self._stub.Delegate, delegate.to_pb(), idempotent=False)
        return Minted(token=Token(answer.token), grant=grant_of(answer, "Delegate"))

    def credentials(self) -> credentials_pb2_grpc.CredentialsStub:
        """The generated `tessera.v1.Credentials` stub (asyncio) over this
        client's connection and key; not retried, no deadline unless given."""
        return credentials_pb2_grpc.CredentialsStub(self._channel)

    async def _call(self, method: Callable[..., Any], request: Any, *, idempotent: bool) -> Any:
        """`Client._call`, awaiting: the same plan, the same errors."""
        attempts = Attempts(self._timeout, self._retry, idempotent=idempotent)
        while True:
            timeout = attempts.next_timeout()
            try:
                return await method(request, timeout=timeout)
            except grpc.RpcError as failure:
                error: TesseraError = from_rpc(failure)
                error.__cause__ = failure
            await asyncio.sleep(attempts.wait_after(error))


class _AioKeyInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Puts the client key on every call of the channel."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def __repr__(self) -> str:
        return "_AioKeyInterceptor(<redacted>)"

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), *self._metadata)
        with_key = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return await continuation(with_key, request)
