"""Mint a single-use token, check it, claim its one use, see it refused after.

Against a Tessera in dev mode (`cargo run --release` in the repository), or
wherever TESSERA_URL (with TESSERA_KEY, TESSERA_CA) points:

    python clients/python/examples/claim.py
"""

import asyncio

from tessera_client import AsyncClient, Claim, Client, Mint, Revoke, Validate, pb


def main() -> None:
    with Client.from_env() as tessera:
        minted = tessera.mint(Mint("user-42", scopes=["tool:search", "connector:*"], run_id="example",
                                   ttl=60, max_uses=1, payload=b"secret-id-7"))
        print("minted", minted.grant.grant_id, minted.token)  # the token prints as Token(<redacted>)

        check = tessera.validate(Validate(minted.token, scopes=["connector:github"]))
        print("valid:", check.valid)

        outcome = tessera.claim(Claim(minted.token, scopes=["tool:search"]))
        print("claimed:", outcome.claimed, "payload:", outcome.payload.expose().decode())

        again = tessera.validate(Validate(minted.token))
        print("after the claim:", pb.Denial.Name(again.denial))
    asyncio.run(end_the_run())


async def end_the_run() -> None:
    # The same calls on asyncio.
    async with AsyncClient.from_env() as tessera:
        print("revoked:", await tessera.revoke(Revoke(run_id="example", reason=pb.REVOKE_REASON_RUN_ENDED)))


if __name__ == "__main__":
    main()
