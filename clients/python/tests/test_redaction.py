"""No token, client key, claim key or payload in any repr or str: of the
client, of the requests, of the answers, of the errors."""

from __future__ import annotations

import pytest

from support import Proxy, Server
from tessera_client import (
    Claim,
    Client,
    Delegate,
    Mint,
    RetryPolicy,
    Revoke,
    Rotate,
    SecretBytes,
    TesseraError,
    Token,
    Validate,
)

TOKEN = "tsr_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"
KEY = "tsk_supersecretclientkey0123456789abcdefghijklmnopq"
PAYLOAD = b"upstream-secret-payload"


def printed(*values: object) -> str:
    return " ".join(f"{value!r} {value!s} {value}" for value in values)


def assert_clean(text: str) -> None:
    for secret in ("0123456789abcdef", "supersecret", "upstream-secret", "claimkey-secret"):
        assert secret not in text, text


def test_the_client_prints_no_key() -> None:
    client = Client("127.0.0.1:1", key=KEY)
    text = printed(client, client.with_timeout(1), client.with_retry(RetryPolicy.none()), client._settings,
                   client.credentials())
    assert_clean(text)
    assert "key=<redacted>" in text and "127.0.0.1:1" in text


def test_requests_print_no_secret() -> None:
    token = Token(TOKEN)
    requests = [
        Mint("user-42", scopes=["tool:search"], payload=PAYLOAD),
        Validate(token, scopes=["tool:search"]),
        Validate(TOKEN),
        Claim(TOKEN, claim_key="claimkey-secret"),
        Revoke(token=TOKEN),
        Rotate(token=token, overlap=5),
        Delegate(TOKEN, payload=PAYLOAD),
    ]
    text = printed(*requests)
    assert_clean(text)
    # What is not secret still prints.
    assert "user-42" in text and "tool:search" in text and f"<{len(PAYLOAD)} bytes>" in text
    assert printed(token, SecretBytes(PAYLOAD)).count("redacted") == 3


def test_answers_and_errors_print_no_secret(server: Server, tessera: Client, unique: str) -> None:
    minted = tessera.mint(Mint(unique, max_uses=1, payload=PAYLOAD))
    claimed = tessera.claim(Claim(minted.token, claim_key="claimkey-secret"))
    assert claimed.payload.expose() == PAYLOAD
    token = minted.token.expose()
    text = printed(minted, claimed, claimed.payload)
    assert token not in text and token[4:20] not in text
    assert_clean(text)
    assert minted.grant.grant_id in text, "the grant prints"

    # Errors of calls that carried the token and key, down to gRPC's own.
    proxy = Proxy(server.address, lose_after=token.encode())
    with Client(proxy.url, key=KEY, timeout=0.5, retry=RetryPolicy.none()) as lossy:
        with pytest.raises(TesseraError) as failed:
            lossy.validate(Validate(minted.token))
    error = failed.value
    text = printed(error, error.__cause__, error.__context__)
    assert token not in text
    assert_clean(text)
    proxy.close()
