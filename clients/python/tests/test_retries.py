"""Replies lost on the wire, connections refused, deadlines: what is retried,
what is not, on SQLite and PostgreSQL. Each test puts a `Proxy` between the
client and a real Tessera and checks, from the bytes the proxy saw, what the
client sent."""

from __future__ import annotations

import time

import pytest

from support import Proxy, Server
from tessera_client import (
    Claim,
    Client,
    DeadlineExceededError,
    ListGrants,
    Mint,
    RetryPolicy,
    Rotate,
    UnavailableError,
    Validate,
    pb,
)

# Many quick attempts: the tests wait for what the proxy did, not for a clock.
PATIENT = RetryPolicy(max_attempts=50, attempt_timeout=2.0, initial_backoff=0.01, max_backoff=0.1)


def through(proxy: Proxy, *, timeout: float = 15.0, retry: RetryPolicy = PATIENT) -> Client:
    return Client(proxy.url, timeout=timeout, retry=retry)


def test_a_claim_whose_reply_was_lost_is_retried_with_its_key_and_keeps_its_one_use(
        server: Server, tessera: Client, unique: str) -> None:
    payload = f"the-one-payload-{unique}".encode()
    minted = tessera.mint(Mint(unique, max_uses=1, payload=payload))
    token = minted.token.expose().encode()
    # The claim reaches Tessera, which answers (with the payload); the proxy
    # drops that answer and cuts the connection.
    proxy = Proxy(server.address, lose_after=token, cut_on=payload)
    with through(proxy) as lossy:
        outcome = lossy.claim(Claim(minted.token))

    assert proxy.cut.is_set() and payload in proxy.dropped, "the first answer was made, and lost"
    assert outcome.claimed, f"the retry was refused: {outcome}"
    assert outcome.payload.expose() == payload
    assert outcome.grant is not None and outcome.grant.use_count == 1
    assert proxy.count(token) == 2 and len(proxy.sent) >= 2, "sent twice, over two connections"
    keys = proxy.claim_keys()
    assert len(keys) == 2 and keys[0] == keys[1], "the retry carried the same claim key"
    assert tessera.get_grant(minted.grant.grant_id).use_count == 1, "one use, for one claim"
    assert tessera.validate(Validate(minted.token)).denial == pb.DENIAL_TOKEN_UNKNOWN
    # A new claim() is a new key: the single use is gone.
    assert not tessera.claim(Claim(minted.token)).claimed
    proxy.close()


@pytest.mark.parametrize("cut", [True, False], ids=["connection-cut", "silent"])
def test_a_mint_whose_reply_was_lost_is_an_error_not_a_second_token(
        server: Server, tessera: Client, unique: str, cut: bool) -> None:
    marker = unique.encode()
    # Cut: the call fails UNAVAILABLE after the request left. Silent: the
    # attempt's deadline passes. Either way it may have minted.
    proxy = Proxy(server.address, lose_after=marker, cut_on=marker if cut else None)
    retry = RetryPolicy(max_attempts=50, attempt_timeout=1.0, initial_backoff=0.01, max_backoff=0.1)
    with through(proxy, retry=retry) as lossy:
        with pytest.raises(UnavailableError if cut else DeadlineExceededError) as failed:
            lossy.mint(Mint("lossy", run_id=unique))
    if cut:
        assert isinstance(failed.value, UnavailableError) and not failed.value.unsent
    assert marker in proxy.dropped, "Tessera answered, and the answer was lost"
    assert proxy.count(marker) == 1, "the mint was sent once, never again"
    assert tessera.list_grants(ListGrants(run_id=unique)).active_count == 1, "minted once"
    proxy.close()


def test_a_rotate_whose_reply_was_lost_is_not_retried(server: Server, tessera: Client, unique: str) -> None:
    minted = tessera.mint(Mint(unique, run_id=unique))
    token = minted.token.expose().encode()
    proxy = Proxy(server.address, lose_after=token, cut_on=unique.encode())
    with through(proxy) as lossy, pytest.raises(UnavailableError):
        lossy.rotate(Rotate(token=minted.token))
    assert proxy.count(token) == 1
    # It did rotate: a retry would have failed and lost the new token.
    assert tessera.get_grant(minted.grant.grant_id).rotated_to


def test_a_mint_that_provably_never_left_is_retried(server: Server, tessera: Client, unique: str) -> None:
    # The first connection is closed before any HTTP/2: the mint is retried
    # on the next and minted once.
    proxy = Proxy(server.address, refuse_first=True)
    with through(proxy) as flaky:
        minted = flaky.mint(Mint("flaky", run_id=unique))
    assert len(proxy.sent) >= 2 and not proxy.sent[0], "the first connection carried nothing"
    assert proxy.count(unique.encode()) == 1
    page = tessera.list_grants(ListGrants(run_id=unique))
    assert page.active_count == 1 and page.grants[0].grant_id == minted.grant.grant_id
    proxy.close()


def test_an_unreachable_tessera_is_unsent_and_retried_until_the_attempts_run_out(unique: str) -> None:
    # Refused at once, every time: three attempts, then the last error (the
    # deadline is far, so that it is not what ends the call).
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
    with Client("127.0.0.1:1", timeout=30, retry=retry) as client, pytest.raises(UnavailableError) as failed:
        client.mint(Mint(unique))
    assert failed.value.unsent and failed.value.provably_not_done()
    assert "failed to connect" in str(failed.value)


def test_every_call_ends_within_its_deadline_retries_included(server: Server, tessera: Client, unique: str) -> None:
    minted = tessera.mint(Mint(unique))
    token = minted.token.expose().encode()
    # Every reply after the first Validate is dropped, and the connection stays open.
    proxy = Proxy(server.address, lose_after=token)
    retry = RetryPolicy(max_attempts=50, attempt_timeout=0.2, initial_backoff=0.01, max_backoff=0.02)
    with through(proxy, retry=retry) as silent:
        silent.wait_ready()
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            silent.with_timeout(1.0).validate(Validate(minted.token))
        took = time.monotonic() - started
        assert proxy.count(token) >= 2, "attempts that timed out were retried, within the deadline"
        # Within 1 s plus slack for a busy machine; never the 10 s default.
        assert 0.9 <= took < 5.0, took
        # The client's own timeout, when no `with_timeout`.
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            Client(proxy.url, timeout=0.5, retry=RetryPolicy.none()).validate(Validate(minted.token))
        assert time.monotonic() - started < 5.0
    proxy.close()
