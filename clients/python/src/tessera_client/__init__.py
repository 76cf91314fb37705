"""A Python client for Tessera, the gRPC token authority for AI agents: mint,
validate, claim, revoke, rotate and delegate short-lived opaque tokens, with
retries that never lose a claim's use nor mint twice.

Example, with a Tessera in dev mode (`cargo run --release` in the repository):

    from tessera_client import Claim, Client, Mint, Validate, pb

    with Client.from_env() as tessera:  # TESSERA_URL, TESSERA_KEY, TESSERA_CA
        minted = tessera.mint(Mint("user-42", scopes=["tool:search"], ttl=60, max_uses=1, payload=b"secret-id-7"))
        print(minted)  # the token prints as Token(<redacted>)
        assert tessera.validate(Validate(minted.token, scopes=["tool:search"])).valid
        outcome = tessera.claim(Claim(minted.token, scopes=["tool:search"]))
        assert outcome.claimed and outcome.payload.expose() == b"secret-id-7"
        assert tessera.validate(Validate(minted.token)).denial == pb.DENIAL_TOKEN_UNKNOWN

`AsyncClient` is the same on asyncio (`grpc.aio`).

Retries and deadlines: every call ends within the client's timeout (10 s by
default; `Client(timeout=…)`, `with_timeout`), retries and waits included;
each attempt is bounded by `RetryPolicy.attempt_timeout` and carries its
deadline to Tessera as `grpc-timeout`. A claim sends a `claim_key` made once
per `claim()` and reused on each retry; Mint, Rotate and Delegate are retried
only when the request provably did nothing (see `tessera_client.retry`).

Secrets: tokens (`Token`), client keys, payloads and credential secrets
(`SecretBytes`) never print: their `repr` says `<redacted>` or gives a length,
and so does the `repr` of every request and of the client.

Layout: `client.py` (Client and its retry loop), `aio.py` (AsyncClient),
`requests.py` (typed requests and answers), `retry.py` (RetryPolicy, the
attempt plan, claim keys), `errors.py` (TesseraError and which failures are
retried), `secret.py` (Token, SecretBytes), `_channel.py` (URL, TLS, key and
`from_env`), `_proto/` (generated at build time from proto/tessera/v1).
"""

from ._channel import DEFAULT_URL
from ._proto import authority_pb2 as pb
from ._proto import credentials_pb2 as credentials_pb
from .aio import AsyncClient
from .client import Client
from .errors import (
    AbortedError,
    ConfigError,
    ConnectError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    RpcError,
    TesseraError,
    UnauthenticatedError,
    UnavailableError,
)
from .requests import (
    Claim,
    ClaimOutcome,
    Credential,
    Delegate,
    GrantPage,
    ListGrants,
    Mint,
    Minted,
    Revoke,
    Rotate,
    Rotated,
    Seconds,
    Validate,
    Validation,
)
from .retry import RetryPolicy
from .secret import SecretBytes, Token, TokenLike

__all__ = [
    "DEFAULT_URL", "pb", "credentials_pb", "Client", "AsyncClient",
    "AbortedError", "ConfigError", "ConnectError", "DeadlineExceededError", "FailedPreconditionError",
    "InvalidArgumentError", "NotFoundError", "OverloadedError", "PermissionDeniedError", "ProtocolError",
    "RpcError", "TesseraError", "UnauthenticatedError", "UnavailableError",
    "Claim", "ClaimOutcome", "Credential", "Delegate", "GrantPage", "ListGrants", "Mint", "Minted", "Revoke",
    "Rotate", "Rotated", "Seconds", "Validate", "Validation",
    "RetryPolicy", "SecretBytes", "Token", "TokenLike",
]
