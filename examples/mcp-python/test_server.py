"""The SDK's own client against server.py, with tokens Tessera minted over gRPC.

`search` needs `tool:search`, `purge_index` needs `tool:admin`. The SDK's client turns an
HTTP error into a generic MCPError, so every HTTP answer is also recorded (an httpx2
response hook) to check the status and the `WWW-Authenticate` challenge.
"""

import time
from contextlib import asynccontextmanager

import anyio
import httpx2
import pytest

from mcp.client import Client
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    create_oauth_metadata_request,
    extract_resource_metadata_from_www_auth,
    handle_auth_metadata_response,
    handle_protected_resource_response,
    validate_metadata_issuer,
)
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from server import TesseraVerifier, canonical


@asynccontextmanager
async def connect(url: str, token: str, answers: list):
    async def record(response: httpx2.Response):
        answers.append(response)

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, event_hooks={"response": [record]})
    # cache=None: every call reaches the server (the client may otherwise answer list_tools itself).
    async with http, Client(streamable_http_client(url, http_client=http), cache=None) as client:
        yield client


def text(result) -> str:
    assert not result.is_error, result
    return result.content[0].text


def test_a_valid_token_lists_and_calls_the_tool(mcp_url, authority):
    token = authority.mint(["tool:search"], run_id="run-1")

    async def main():
        async with connect(mcp_url, token, []) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert {"search", "purge_index"} <= tools
            assert text(await client.call_tool("search", {"query": "tessera"})) == "3 results for 'tessera'"

    anyio.run(main)


def test_a_token_without_the_tools_scope_gets_403_insufficient_scope(mcp_url, authority):
    token = authority.mint(["tool:search"], run_id="run-1")
    answers = []

    async def main():
        async with connect(mcp_url, token, answers) as client:
            with pytest.raises(MCPError):
                await client.call_tool("purge_index", {})
            assert 'error="insufficient_scope", scope="tool:admin"' in challenge(answers, 403)
            # The same session still does what the token allows.
            assert text(await client.call_tool("search", {"query": "q"})) == "3 results for 'q'"

    anyio.run(main)

    admin = authority.mint(["tool:*"], run_id="run-1")  # a family grants every scope in it

    async def as_admin():
        async with connect(mcp_url, admin, []) as client:
            assert text(await client.call_tool("purge_index", {})) == "index purged"

    anyio.run(as_admin)


def challenge(answers: list, status: int) -> str:
    """The `WWW-Authenticate` of the refusals among `answers`, all of them `status`."""
    refusals = [a for a in answers if a.status_code >= 400]
    assert refusals and {a.status_code for a in refusals} == {status}, refusals
    return refusals[-1].headers["www-authenticate"]


def assert_refused(answers: list):
    header = challenge(answers, 401)
    assert 'error="invalid_token"' in header and "resource_metadata=" in header, header


def refused_from_the_start(mcp_url: str, token: str):
    """A connection with `token` is refused from its first request (401, `resource_metadata`)."""
    answers = []

    async def main():
        async with connect(mcp_url, token, answers):
            pass

    with pytest.raises(ExceptionGroup) as refused:
        anyio.run(main)
    assert refused.group_contains(MCPError)
    assert_refused(answers)


def test_a_revoked_token_gets_401(mcp_url, authority):
    token = authority.mint(["tool:search"], run_id="run-2")
    answers = []

    async def main():
        async with connect(mcp_url, token, answers) as client:
            assert text(await client.call_tool("search", {"query": "q"})) == "3 results for 'q'"
            assert authority.revoke(token=token) == 1
            with pytest.raises(MCPError):
                await client.call_tool("search", {"query": "q"})
            assert_refused(answers)

    anyio.run(main)
    answers.clear()
    with pytest.raises(ExceptionGroup) as refused:  # a new connection is refused from its first request
        anyio.run(main)
    assert refused.group_contains(MCPError)
    assert_refused(answers)


def test_revoking_the_run_gets_401_for_its_tokens(mcp_url, authority):
    first, second = (authority.mint(["tool:search"], run_id="run-3") for _ in range(2))
    other_run = authority.mint(["tool:search"], run_id="run-4")
    assert authority.revoke(run_id="run-3", reason="REVOKE_REASON_RUN_ENDED") == 2

    async def call(token: str, answers: list) -> str:
        async with connect(mcp_url, token, answers) as client:
            return text(await client.call_tool("search", {"query": "q"}))

    for token in (first, second):
        answers = []
        with pytest.raises(ExceptionGroup) as refused:
            anyio.run(call, token, answers)
        assert refused.group_contains(MCPError)
        assert_refused(answers)
    assert anyio.run(call, other_run, []) == "3 results for 'q'"


def test_a_token_for_another_resource_or_for_anyone_gets_401(mcp_url, authority):
    refused_from_the_start(mcp_url, authority.mint(["tool:search"], "run-5", audience=["https://other.example.com/mcp"]))
    # Tessera does not show a token for anyone to a client that declares a resource.
    refused_from_the_start(mcp_url, authority.mint(["tool:search"], "run-5", audience=()))
    # Naming the server's client id: active at Tessera, but it names no resource, so the
    # SDK's resource check (validate_token_resource) refuses it.
    refused_from_the_start(mcp_url, authority.mint(["tool:search"], "run-5", audience=["mcp-server"]))

    async def call(token: str) -> str:
        async with connect(mcp_url, token, []) as client:
            return text(await client.call_tool("search", {"query": "q"}))

    spelt = mcp_url.replace("http://", "HTTP://") + "/"  # the same resource, spelt otherwise
    assert anyio.run(call, authority.mint(["tool:search"], "run-5", audience=[spelt])) == "3 results for 'q'"


def test_an_expired_token_gets_401(mcp_url, tessera, authority, resource):
    token = authority.mint(["tool:search"], "run-6", ttl=1)
    verifier = TesseraVerifier(tessera["url"], "mcp-server", tessera["keys"]["mcp-server"], resource)

    async def expired():  # wait for the event (Tessera calls it inactive), not for a guessed time
        async with verifier.http:
            while await verifier.verify_token(token) is not None:
                await anyio.sleep(0.1)

    anyio.run(expired)
    refused_from_the_start(mcp_url, token)


def test_the_sdks_discovery_accepts_tesseras_metadata(mcp_url, tessera):
    """From the server's 401 to Tessera's RFC 8414 document, with the SDK's own discovery steps."""

    async def main():
        async with httpx2.AsyncClient() as http:
            unauthenticated = await http.post(mcp_url, json={})
            www_auth = extract_resource_metadata_from_www_auth(unauthenticated)
            for url in build_protected_resource_metadata_discovery_urls(www_auth, mcp_url):
                if prm := await handle_protected_resource_response(await http.send(create_oauth_metadata_request(url))):
                    break
            issuer = str(prm.authorization_servers[0])
            for url in build_oauth_authorization_server_metadata_discovery_urls(issuer, mcp_url):
                found, metadata = await handle_auth_metadata_response(await http.send(create_oauth_metadata_request(url)))
                if metadata:
                    return issuer, metadata

    issuer, metadata = anyio.run(main)
    assert issuer.rstrip("/") == tessera["url"]
    validate_metadata_issuer(metadata, tessera["url"])
    assert str(metadata.introspection_endpoint) == f"{tessera['url']}/oauth2/introspect"
    # The authorization endpoint the schema requires exists and refuses: there is no flow.
    assert metadata.response_types_supported == []
    refusal = httpx2.get(str(metadata.authorization_endpoint), params={"response_type": "code"})
    assert refusal.status_code == 400 and refusal.json()["error"] == "unsupported_response_type"


def test_the_verifier_maps_introspection_onto_access_token(tessera, authority, resource):
    minted_after = time.time()
    token = authority.mint(["tool:search", "connector:*"], run_id="run-7")
    verifier = TesseraVerifier(tessera["url"], "mcp-server", tessera["keys"]["mcp-server"], resource)

    async def main():
        async with verifier.http:
            return await verifier.verify_token(token), await verifier.verify_token(token[:-1] + "x")

    access, malformed = anyio.run(main)
    assert malformed is None
    assert access.token == token and access.scopes == ["tool:search", "connector:*"]
    assert (access.client_id, access.subject, access.resource) == ("orchestrator", "user-42", resource)
    # Five minutes from the mint, whenever it ran between the two readings
    # (in whole seconds); the machine may be slow.
    assert minted_after + 300 - 1 <= access.expires_at <= time.time() + 300
    assert access.claims["run_id"] == "run-7" and access.claims["iss"] == tessera["url"]
    assert access.claims["jti"].startswith("grt_") and "active" not in access.claims


def test_resource_uris_as_tessera_keeps_them():
    assert canonical("HTTPS://MCP.Example.com:443/mcp/#x") == "https://mcp.example.com/mcp"
    assert canonical("https://mcp.example.com") == "https://mcp.example.com/"
