"""Every typed call against the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tessera_client import (
    Claim,
    Client,
    Delegate,
    FailedPreconditionError,
    InvalidArgumentError,
    ListGrants,
    Mint,
    Revoke,
    Rotate,
    Token,
    Validate,
    pb,
)


def test_mint_validate_and_a_single_use_claimed_once(tessera: Client, unique: str) -> None:
    minted = tessera.mint(Mint(unique, scopes=["tool:search", "connector:*"], run_id=unique,
                               labels={"project": "p-1"}, ttl=60, max_uses=1, payload=b"secret-id-7"))
    assert isinstance(minted.token, Token) and minted.token.expose().startswith("tsr_")
    assert minted.grant.subject == unique and minted.grant.max_uses == 1
    assert dict(minted.grant.labels) == {"project": "p-1"}

    for consistency in (pb.CONSISTENCY_FULL, pb.CONSISTENCY_BOUNDED):
        check = tessera.validate(Validate(minted.token, scopes=["connector:github"], subject=unique,
                                          consistency=consistency))
        assert check.valid and check.grant is not None and check.grant.grant_id == minted.grant.grant_id
    missing = tessera.validate(Validate(minted.token, scopes=["admin"]))
    assert not missing.valid and missing.denial == pb.DENIAL_SCOPE_MISSING and missing.grant is None

    first = tessera.claim(Claim(minted.token, scopes=["tool:search"]))
    assert first.claimed and first.payload.expose() == b"secret-id-7"
    assert first.grant is not None and first.grant.use_count == 1
    # A new claim (a new key) finds it used up.
    second = tessera.claim(Claim(minted.token.expose()))
    assert not second.claimed and second.denial == pb.DENIAL_TOKEN_UNKNOWN and not second.payload
    assert tessera.validate(Validate(minted.token)).denial == pb.DENIAL_TOKEN_UNKNOWN
    assert tessera.validate(Validate("tsr_nope")).denial == pb.DENIAL_TOKEN_MALFORMED


def test_a_claim_repeated_with_its_key_gets_the_original_answer(tessera: Client, unique: str) -> None:
    minted = tessera.mint(Mint(unique, max_uses=1, payload=b"checkpoint-3"))
    # What a retry after a lost reply sends: the same token, the same key.
    claim = Claim(minted.token, claim_key=f"{unique}-call-1")
    first = tessera.claim(claim)
    again = tessera.claim(claim)
    assert again.claimed and again.payload.expose() == b"checkpoint-3"
    assert again == first
    assert tessera.get_grant(minted.grant.grant_id).use_count == 1, "the repeat consumed nothing"
    other = tessera.claim(Claim(minted.token, claim_key=f"{unique}-call-2"))
    assert not other.claimed and other.denial == pb.DENIAL_TOKEN_UNKNOWN


def test_revoke_get_and_list(tessera: Client, unique: str) -> None:
    one = tessera.mint(Mint(unique, run_id=unique))
    two = tessera.mint(Mint(unique, run_id=unique))
    page = tessera.list_grants(ListGrants(run_id=unique, page_size=1))
    assert len(page.grants) == 1 and page.active_count == 2 and page.next_page_token
    rest = tessera.list_grants(ListGrants(run_id=unique, page_token=page.next_page_token))
    assert [g.grant_id for g in page.grants + rest.grants] == [one.grant.grant_id, two.grant.grant_id]
    assert rest.next_page_token is None

    assert tessera.revoke(Revoke(token=one.token)) == 1
    assert tessera.revoke(Revoke(token=one.token)) == 0, "revoking twice revokes once"
    assert tessera.get_grant(one.grant.grant_id).HasField("revoked_at")
    assert tessera.revoke(Revoke(run_id=unique, reason=pb.REVOKE_REASON_RUN_ENDED)) == 1
    revoked = tessera.get_grant(two.grant.grant_id)
    assert revoked.revoke_reason == pb.REVOKE_REASON_RUN_ENDED
    assert tessera.list_grants(ListGrants(run_id=unique)).active_count == 0
    assert len(tessera.list_grants(ListGrants(run_id=unique, include_inactive=True)).grants) == 2

    three = tessera.mint(Mint(unique))
    assert tessera.revoke(Revoke(grant_id=three.grant.grant_id)) == 1
    tessera.mint(Mint(unique))
    assert tessera.revoke(Revoke(subject=unique)) == 1
    with pytest.raises(InvalidArgumentError, match="grant_id"):
        tessera.get_grant("grt_nosuchgrant")


def test_rotate_and_delegate(tessera: Client, unique: str) -> None:
    parent = tessera.mint(Mint(unique, scopes=["connector:*"], ttl=timedelta(minutes=5), max_uses=3,
                               payload=b"p"))
    child = tessera.delegate(Delegate(parent.token, scopes=["connector:github"], max_uses=1, labels={"k": "v"}))
    assert child.grant.parent_grant_id == parent.grant.grant_id and child.grant.depth == 1
    assert list(child.grant.scopes) == ["connector:github"]

    rotated = tessera.rotate(Rotate(token=parent.token, overlap=0))
    assert rotated.previous.rotated_to == rotated.grant.grant_id
    assert rotated.grant.rotated_from == parent.grant.grant_id
    assert tessera.validate(Validate(rotated.token)).valid
    claimed = tessera.claim(Claim(rotated.token))
    assert claimed.claimed and claimed.payload.expose() == b"p", "the payload is carried over"
    # A grant rotates once, and its delegate went with it.
    with pytest.raises(FailedPreconditionError):
        tessera.rotate(Rotate(grant_id=parent.grant.grant_id))
    assert not tessera.validate(Validate(child.token)).valid


def test_bad_input_is_an_error_naming_the_field(tessera: Client, unique: str) -> None:
    with pytest.raises(InvalidArgumentError) as bad:
        tessera.mint(Mint(""))
    assert "subject" in str(bad.value)
    with pytest.raises(InvalidArgumentError) as bad:
        tessera.mint(Mint(unique, scopes=["has space"]))
    assert "scope" in str(bad.value)
    # Caught before a call is made, naming the field too.
    with pytest.raises(ValueError, match="ttl"):
        Mint(unique, ttl=-1).to_pb()
    with pytest.raises(TypeError, match="scopes"):
        Mint(unique, scopes="tool:search").to_pb()
    with pytest.raises(ValueError, match="exactly one of token, grant_id, run_id, subject"):
        Revoke(run_id=unique, subject=unique)
    with pytest.raises(ValueError, match="max_uses"):
        Mint(unique, max_uses=-1).to_pb()
