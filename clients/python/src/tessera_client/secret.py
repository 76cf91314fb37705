"""Values that must never be printed: tokens, client keys, payloads and stored
secrets. Their `repr` and `str` say what they are, never what they hold; the
plaintext is reached only through `expose()`.
"""

from __future__ import annotations

import hmac
from typing import Union


class Token:
    """A Tessera token (`tsr_…`). Prints as `Token(<redacted>)`.

    Wraps a token received from elsewhere (an `Authorization` header, an
    agent's environment) too: nothing is checked here, Tessera judges it.
    """

    __slots__ = ("_plaintext",)

    def __init__(self, plaintext: str) -> None:
        if not isinstance(plaintext, str):
            raise TypeError(f"token: expected str, got {type(plaintext).__name__}")
        self._plaintext = plaintext

    def expose(self) -> str:
        """The plaintext token, to hand to whoever must present it."""
        return self._plaintext

    def __repr__(self) -> str:
        return "Token(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        # Constant time: a token compared in a request handler must not leak
        # its prefix through timing.
        return isinstance(other, Token) and hmac.compare_digest(self._plaintext, other._plaintext)

    def __hash__(self) -> int:
        return hash(self._plaintext)


TokenLike = Union[Token, str]
"""A token as the calls take it: a `Token`, or its plaintext."""


def plaintext(token: TokenLike, field: str) -> str:
    """The plaintext of `token`, or a TypeError naming `field`."""
    if isinstance(token, Token):
        return token.expose()
    if isinstance(token, str):
        return token
    raise TypeError(f"{field}: expected a Token or str, got {type(token).__name__}")


class SecretBytes:
    """Secret bytes (a claim's payload, a part of a stored credential). Prints
    only their length."""

    __slots__ = ("_bytes",)

    def __init__(self, data: bytes) -> None:
        self._bytes = bytes(data)

    def expose(self) -> bytes:
        """The bytes themselves."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._bytes)

    def __bool__(self) -> bool:
        return bool(self._bytes)

    def __repr__(self) -> str:
        return f"SecretBytes(<{len(self._bytes)} bytes>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretBytes) and hmac.compare_digest(self._bytes, other._bytes)

    def __hash__(self) -> int:
        return hash(self._bytes)


class ClientKey:
    """A Tessera client key (`tsk_…`), sent as `authorization: Bearer <key>`."""

    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        if not key or not all(" " < c <= "~" for c in key):
            # gRPC metadata must be printable ASCII; say so without the key.
            raise ValueError("key: the client key must be non-empty printable ASCII without spaces")
        self._key = key

    def header(self) -> tuple[str, str]:
        return ("authorization", f"Bearer {self._key}")

    def __repr__(self) -> str:
        return "ClientKey(<redacted>)"

    __str__ = __repr__
