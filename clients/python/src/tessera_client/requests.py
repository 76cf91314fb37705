"""Typed requests (over the generated wire messages) and typed answers.

Requests are frozen dataclasses: keep one and pass it again, or build it from
keyword arguments at the call. Their `repr` prints every field except the
secrets: a token or a claim key prints as `<redacted>`, a payload as its
length. Answers hold the generated `Grant` (which never carries a secret),
`Token` and `SecretBytes`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Mapping, Optional, Sequence, Union

from ._proto import authority_pb2 as pb
from .errors import ProtocolError
from .secret import SecretBytes, Token, TokenLike, plaintext

Seconds = Union[float, int, timedelta]
"""A duration: seconds, or a `timedelta`."""

_SECRET = "secret"  # dataclass field metadata: print as <redacted> or <N bytes>


def _secret(default: object = dataclasses.MISSING) -> object:
    if default is dataclasses.MISSING:
        return field(metadata={_SECRET: True})
    return field(default=default, metadata={_SECRET: True})


class _Redacted:
    """`repr` that prints every field but the secret ones."""

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get(_SECRET):
                if isinstance(value, (bytes, bytearray)):
                    shown = f"<{len(value)} bytes>"
                else:
                    shown = "None" if value is None else "<redacted>"
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__


def _strings(value: Sequence[str], name: str) -> list[str]:
    # A bare string is a sequence of one-letter strings: a classic slip.
    if isinstance(value, str):
        raise TypeError(f"{name}: expected a list of strings, got a str")
    return list(value)


def _duration(target: object, value: Seconds, name: str) -> None:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"{name}: must not be negative")
    target.FromNanoseconds(round(seconds * 1e9))  # type: ignore[attr-defined]


def _uint32(value: int, name: str) -> int:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name}: must be between 0 and 4294967295")
    return value


@dataclass(frozen=True, repr=False)
class Mint(_Redacted):
    """A new token for `subject` (role `mint`)."""

    subject: str
    scopes: Sequence[str] = ()
    """What the token allows (`family:*` grants a whole family)."""
    audience: Sequence[str] = ()
    """The client ids that may validate or claim it; none = any client with the role."""
    run_id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    ttl: Optional[Seconds] = None
    """Lifetime; None = the server's default."""
    max_uses: int = 0
    """0 = unlimited, 1 = single use, N = N claims."""
    payload: bytes = _secret(b"")  # type: ignore[assignment]
    """Revealed only by a successful claim."""
    revoke_run_on_replay: bool = False
    payload_credential: Optional[pb.CredentialRef] = None
    """A claim hands over the current secret of this stored credential."""

    def to_pb(self) -> pb.MintRequest:
        message = pb.MintRequest(
            subject=self.subject,
            scopes=_strings(self.scopes, "scopes"),
            audience=_strings(self.audience, "audience"),
            run_id=self.run_id,
            labels=dict(self.labels),
            max_uses=_uint32(self.max_uses, "max_uses"),
            payload=bytes(self.payload),
            revoke_run_on_replay=self.revoke_run_on_replay,
        )
        if self.ttl is not None:
            _duration(message.ttl, self.ttl, "ttl")
        if self.payload_credential is not None:
            message.payload_credential.CopyFrom(self.payload_credential)
        return message


@dataclass(frozen=True)
class Minted:
    """A new token and its grant (Mint, Delegate)."""

    token: Token
    grant: pb.Grant


@dataclass(frozen=True, repr=False)
class Validate(_Redacted):
    """Checks a token, consuming nothing (role `validate`)."""

    token: TokenLike = _secret()  # type: ignore[assignment]
    scopes: Sequence[str] = ()
    """Every one must be granted."""
    subject: str = ""
    """The verified principal the caller acts for."""
    consistency: pb.Consistency = pb.CONSISTENCY_FULL
    """FULL asks the database; BOUNDED may answer from the server's memory,
    at most `--cache-max-age` old."""

    def to_pb(self) -> pb.ValidateRequest:
        return pb.ValidateRequest(
            token=plaintext(self.token, "token"),
            required_scopes=_strings(self.scopes, "scopes"),
            subject=self.subject,
            consistency=self.consistency,
        )


@dataclass(frozen=True)
class Validation:
    """A Validate's outcome: `valid` with its `grant`, or a `denial`."""

    valid: bool
    denial: pb.Denial
    """DENIAL_UNSPECIFIED when valid."""
    grant: Optional[pb.Grant]

    @classmethod
    def from_pb(cls, answer: pb.ValidateResponse) -> Validation:
        if not answer.valid:
            return cls(valid=False, denial=answer.denial, grant=None)
        if not answer.HasField("grant"):
            raise ProtocolError("malformed answer from Tessera: valid without a grant")
        return cls(valid=True, denial=pb.DENIAL_UNSPECIFIED, grant=answer.grant)


@dataclass(frozen=True, repr=False)
class Claim(_Redacted):
    """Consumes one use of a token (role `claim`)."""

    token: TokenLike = _secret()  # type: ignore[assignment]
    scopes: Sequence[str] = ()
    """Every one must be granted."""
    subject: str = ""
    """The verified principal the caller acts for."""
    claim_key: Optional[str] = _secret(None)  # type: ignore[assignment]
    """The idempotency key (<= 128 bytes). None: `claim()` makes a fresh random
    one per call and reuses it on each retry. Set one to make a claim
    retry-safe across calls too (across a restart of your own process): a
    claim repeated with the same key and token gets the original outcome and
    consumes nothing more."""

    def to_pb(self) -> pb.ClaimRequest:
        return pb.ClaimRequest(
            token=plaintext(self.token, "token"),
            required_scopes=_strings(self.scopes, "scopes"),
            subject=self.subject,
            claim_key=self.claim_key or "",
        )


@dataclass(frozen=True)
class Credential:
    """A stored credential's secret, as a claim hands it over."""

    secret: Mapping[str, SecretBytes]
    version: int


@dataclass(frozen=True)
class ClaimOutcome:
    """A Claim's outcome: `claimed`, with the grant after this use, the
    payload and the credential; or a `denial`."""

    claimed: bool
    denial: pb.Denial
    """DENIAL_UNSPECIFIED when claimed."""
    grant: Optional[pb.Grant]
    payload: SecretBytes
    """The payload minted with the token (empty if none, or denied)."""
    credential: Optional[Credential]

    @classmethod
    def from_pb(cls, answer: pb.ClaimResponse) -> ClaimOutcome:
        if not answer.claimed:
            return cls(False, answer.denial, None, SecretBytes(b""), None)
        if not answer.HasField("grant"):
            raise ProtocolError("malformed answer from Tessera: claimed without a grant")
        credential = None
        if answer.credential:
            secret = {name: SecretBytes(value) for name, value in answer.credential.items()}
            credential = Credential(secret=secret, version=answer.credential_version)
        return cls(True, pb.DENIAL_UNSPECIFIED, answer.grant, SecretBytes(answer.payload), credential)


@dataclass(frozen=True, repr=False)
class Revoke(_Redacted):
    """Revokes what exactly one of `token`, `grant_id`, `run_id` or `subject`
    names (role `revoke`)."""

    token: Optional[TokenLike] = _secret(None)  # type: ignore[assignment]
    """The grant of this token."""
    grant_id: Optional[str] = None
    run_id: Optional[str] = None
    """Every live grant of a run."""
    subject: Optional[str] = None
    """Every live grant of a subject."""
    reason: pb.RevokeReason = pb.REVOKE_REASON_MANUAL
    """Why, for the audit trail."""

    def __post_init__(self) -> None:
        named = [name for name in ("token", "grant_id", "run_id", "subject") if getattr(self, name) is not None]
        if len(named) != 1:
            raise ValueError(f"Revoke: give exactly one of token, grant_id, run_id, subject (got {named or 'none'})")

    def to_pb(self) -> pb.RevokeRequest:
        message = pb.RevokeRequest(reason=self.reason)
        if self.token is not None:
            message.token = plaintext(self.token, "token")
        elif self.grant_id is not None:
            message.grant_id = self.grant_id
        elif self.run_id is not None:
            message.run_id = self.run_id
        elif self.subject is not None:
            message.subject = self.subject
        return message


@dataclass(frozen=True)
class ListGrants:
    """A ListGrants query (filters empty = any)."""

    subject: str = ""
    run_id: str = ""
    include_inactive: bool = False
    """Also list revoked, expired and used-up grants."""
    page_size: int = 0
    """0 = the server's default (100); at most 1000."""
    page_token: str = ""
    """A previous page's `next_page_token`."""

    def to_pb(self) -> pb.ListGrantsRequest:
        return pb.ListGrantsRequest(
            subject=self.subject,
            run_id=self.run_id,
            include_inactive=self.include_inactive,
            page_size=_uint32(self.page_size, "page_size"),
            page_token=self.page_token,
        )


@dataclass(frozen=True)
class GrantPage:
    """One page of grants, oldest first."""

    grants: list[pb.Grant]
    next_page_token: Optional[str]
    """Pass to `ListGrants(page_token=…)` for the next page; None on the last."""
    active_count: int
    """Live grants matching the subject and run filters."""


@dataclass(frozen=True, repr=False)
class Rotate(_Redacted):
    """Replaces a grant with a successor and a new token (role `mint`): by
    `token` (its payload is carried over) or by `grant_id` (not for a grant
    with a payload)."""

    token: Optional[TokenLike] = _secret(None)  # type: ignore[assignment]
    grant_id: Optional[str] = None
    overlap: Optional[Seconds] = None
    """How long the old token stays valid (default: not at all)."""
    ttl: Optional[Seconds] = None
    """The successor's lifetime (default: the original's length)."""

    def __post_init__(self) -> None:
        if (self.token is None) == (self.grant_id is None):
            raise ValueError("Rotate: give exactly one of token, grant_id")

    def to_pb(self) -> pb.RotateRequest:
        message = pb.RotateRequest()
        if self.token is not None:
            message.token = plaintext(self.token, "token")
        else:
            message.grant_id = self.grant_id or ""
        if self.overlap is not None:
            _duration(message.overlap, self.overlap, "overlap")
        if self.ttl is not None:
            _duration(message.ttl, self.ttl, "ttl")
        return message


@dataclass(frozen=True)
class Rotated:
    """A rotation's result."""

    token: Token
    grant: pb.Grant
    previous: pb.Grant
    """The grant replaced, as it is now."""


@dataclass(frozen=True, repr=False)
class Delegate(_Redacted):
    """A token for a sub-agent that can do no more than its `parent` (role `mint`)."""

    parent: TokenLike = _secret()  # type: ignore[assignment]
    scopes: Sequence[str] = ()
    """Each granted by the parent's scopes; none = the parent's."""
    audience: Sequence[str] = ()
    """Within the parent's audience; none = the parent's."""
    ttl: Optional[Seconds] = None
    """At most the parent's remaining lifetime (default: all of it)."""
    max_uses: int = 0
    """At most the parent's remaining uses; 0 = that many."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Added to the parent's labels."""
    payload: bytes = _secret(b"")  # type: ignore[assignment]

    def to_pb(self) -> pb.DelegateRequest:
        message = pb.DelegateRequest(
            parent_token=plaintext(self.parent, "parent"),
            scopes=_strings(self.scopes, "scopes"),
            audience=_strings(self.audience, "audience"),
            max_uses=_uint32(self.max_uses, "max_uses"),
            labels=dict(self.labels),
            payload=bytes(self.payload),
        )
        if self.ttl is not None:
            _duration(message.ttl, self.ttl, "ttl")
        return message
