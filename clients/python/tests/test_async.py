"""`AsyncClient` against the real server: the same calls, the same retry
rules over a lossy proxy, the same secrecy. Each test runs its own event loop."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Awaitable, Callable, Iterator

import pytest

from support import Database, Proxy, Server, client_key
from tessera_client import (
    AsyncClient,
    Claim,
    DeadlineExceededError,
    Delegate,
    ListGrants,
    Mint,
    PermissionDeniedError,
    RetryPolicy,
    Revoke,
    Rotate,
    UnavailableError,
    Validate,
    credentials_pb,
    pb,
)

PATIENT = RetryPolicy(max_attempts=50, attempt_timeout=2.0, initial_backoff=0.01, max_backoff=0.1)


def run(test: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(test())  # type: ignore[arg-type]


def test_every_call(server: Server, unique: str) -> None:
    async def go() -> None:
        async with AsyncClient(server.url) as tessera:
            await tessera.wait_ready()
            # Three uses: the delegate takes one, the successor carries the
            # count and keeps the rest.
            minted = await tessera.mint(Mint(unique, scopes=["tool:*"], run_id=unique, max_uses=3, payload=b"p-1"))
            assert (await tessera.validate(Validate(minted.token, scopes=["tool:search"]))).valid
            child = await tessera.delegate(Delegate(minted.token, scopes=["tool:search"], max_uses=1))
            claimed = await tessera.claim(Claim(child.token, scopes=["tool:search"]))
            assert claimed.claimed and claimed.grant is not None and claimed.grant.use_count == 1
            refused = await tessera.claim(Claim(child.token))
            assert not refused.claimed and refused.denial == pb.DENIAL_TOKEN_UNKNOWN
            rotated = await tessera.rotate(Rotate(token=minted.token))
            assert rotated.previous.grant_id == minted.grant.grant_id
            assert (await tessera.claim(Claim(rotated.token))).payload.expose() == b"p-1"
            page = await tessera.list_grants(ListGrants(run_id=unique, include_inactive=True))
            # The parent, its delegate (of the same run) and its successor; only the last is live.
            assert len(page.grants) == 3 and page.active_count == 1 and page.next_page_token is None
            assert await tessera.revoke(Revoke(run_id=unique)) == 1
            assert (await tessera.get_grant(rotated.grant.grant_id)).HasField("revoked_at")
    run(go)


def test_a_claim_whose_reply_was_lost_keeps_its_one_use(server: Server, unique: str) -> None:
    async def go() -> None:
        payload = f"async-payload-{unique}".encode()
        async with AsyncClient(server.url) as tessera:
            minted = await tessera.mint(Mint(unique, max_uses=1, payload=payload))
            token = minted.token.expose().encode()
            proxy = Proxy(server.address, lose_after=token, cut_on=payload)
            async with AsyncClient(proxy.url, timeout=15, retry=PATIENT) as lossy:
                outcome = await lossy.claim(Claim(minted.token))
            assert proxy.cut.is_set() and payload in proxy.dropped
            assert outcome.claimed and outcome.payload.expose() == payload
            keys = proxy.claim_keys()
            assert len(keys) == 2 and keys[0] == keys[1], "the retry carried the same claim key"
            assert (await tessera.get_grant(minted.grant.grant_id)).use_count == 1
            proxy.close()
    run(go)


def test_a_mint_whose_reply_was_lost_is_not_retried(server: Server, unique: str) -> None:
    async def go() -> None:
        proxy = Proxy(server.address, lose_after=unique.encode(), cut_on=unique.encode())
        async with AsyncClient(proxy.url, timeout=15, retry=PATIENT) as lossy:
            with pytest.raises(UnavailableError) as failed:
                await lossy.mint(Mint("lossy", run_id=unique))
        assert not failed.value.unsent
        assert proxy.count(unique.encode()) == 1
        async with AsyncClient(server.url) as tessera:
            assert (await tessera.list_grants(ListGrants(run_id=unique))).active_count == 1
        proxy.close()
    run(go)


def test_deadlines_and_unsent_retries(server: Server, unique: str) -> None:
    async def go() -> None:
        async with AsyncClient(server.url) as tessera:
            minted = await tessera.mint(Mint(unique))
        proxy = Proxy(server.address, lose_after=minted.token.expose().encode())
        retry = RetryPolicy(max_attempts=50, attempt_timeout=0.2, initial_backoff=0.01, max_backoff=0.02)
        async with AsyncClient(proxy.url, retry=retry) as silent:
            with pytest.raises(DeadlineExceededError):
                await silent.with_timeout(1.0).validate(Validate(minted.token))
        assert proxy.count(minted.token.expose().encode()) >= 2
        proxy.close()
        refusing = Proxy(server.address, refuse_first=True)
        async with AsyncClient(refusing.url, retry=PATIENT) as flaky:
            await flaky.mint(Mint("flaky", run_id=unique))
        assert not refusing.sent[0] and refusing.count(unique.encode()) == 1
        refusing.close()
    run(go)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("async-keyed")
    keys, entries = {}, []
    for client, roles in [("minter", ["mint"]), ("vault", ["credentials"])]:
        keys[client], entry = client_key(client, *roles)
        entries.append(entry)
    (tmp / "seal.key").write_text(f"k1:{secrets.token_hex(32)}\n")
    server = Server(Database("sqlite", tmp), tmp, "--seal-key", str(tmp / "seal.key"), clients="\n".join(entries))
    yield server, keys
    server.stop()


def test_the_key_from_env_and_no_secret_printed(keyed: tuple[Server, dict[str, str]], unique: str) -> None:
    server, keys = keyed

    async def go() -> None:
        environ = {"TESSERA_URL": server.url, "TESSERA_KEY": keys["minter"]}
        async with AsyncClient.from_env(environ) as minter:
            assert keys["minter"] not in f"{minter!r} {minter} {minter.with_timeout(1)}"
            assert "key=<redacted>" in repr(minter)
            minted = await minter.mint(Mint(unique))
            assert minted.grant.issued_by == "minter"
            with pytest.raises(PermissionDeniedError):
                await minter.validate(Validate(minted.token))
        async with AsyncClient(server.url, key=keys["vault"]) as vault:
            listed = await vault.credentials().List(credentials_pb.ListRequest(bearer_id=unique), timeout=5)
            assert list(listed.credentials) == []
    run(go)
