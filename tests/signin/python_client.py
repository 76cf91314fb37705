"""An MCP client on the official Python SDK (`mcp`, as pinned in examples/mcp-python),
signing in with the SDK's own `OAuthClientProvider`, driven by signin.test.mjs.

It connects to an MCP server with no token, and the SDK does the rest: the 401, the
protected-resource metadata (RFC 9728), Tessera's metadata (RFC 8414), the client ID
metadata document's URL as `client_id` (or RFC 7591 registration without one), PKCE,
`resource` (RFC 8707), the state and `iss` (RFC 9207) checks, the code exchange.

The person is the test: the redirect handler writes the authorization URL as one JSON
line on stdout (`{"authorize": url}`), the test's Chromium signs in and consents, and
the browser lands on this process's loopback callback. Each HTTP answer the SDK got is
a line `{"visited": "METHOD URL STATUS"}` (no query). The last line is the outcome:
`{"tools": [...], "result": "..."}`; a failed flow exits non-zero with the SDK's error.
"""

import argparse
import asyncio
import json
import sys
from urllib.parse import parse_qs, urlsplit

import anyio
from mcp.client import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

import httpx2


class Memory(TokenStorage):
    """Nothing outlives the process: each run signs in afresh."""

    def __init__(self):
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info):
        self.client = client_info


class Callback:
    """The loopback redirect URI (RFC 8252 7.3): one request, its query handed to the SDK."""

    def __init__(self, port: int):
        self.port = port
        self.query: asyncio.Future = asyncio.get_running_loop().create_future()

    async def start(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)

    async def handle(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ", 2)[1].decode()
        body = b"<!doctype html><title>Signed in</title><p id='done'>You can close this window.</p>"
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nconnection: close\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()
        if urlsplit(target).path == "/callback" and not self.query.done():
            self.query.set_result({k: v[0] for k, v in parse_qs(urlsplit(target).query).items()})

    async def result(self) -> AuthorizationCodeResult:
        query = await self.query
        if "error" in query:  # consent refused: the SDK has no error result, so the flow ends here
            raise RuntimeError(f"authorization refused: {query['error']}")
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))


def say(**message):
    print(json.dumps(message), flush=True)


async def main(args):
    callback = Callback(args.callback_port)
    await callback.start()

    async def redirect(url: str):
        say(authorize=url)

    metadata = OAuthClientMetadata(
        client_name=args.name,
        redirect_uris=[f"http://127.0.0.1:{args.callback_port}/callback"],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    auth = OAuthClientProvider(args.mcp, metadata, Memory(), redirect_handler=redirect,
                               callback_handler=callback.result, client_metadata_url=args.client_metadata_url)
    async def record(response: httpx2.Response):  # the discovery the SDK did, for the test
        request = response.request
        say(visited=f"{request.method} {request.url.copy_with(query=None)} {response.status_code}")

    async with httpx2.AsyncClient(auth=auth, timeout=30, event_hooks={"response": [record]}) as http:
        async with Client(streamable_http_client(args.mcp, http_client=http), cache=None) as client:
            tools = sorted(t.name for t in (await client.list_tools()).tools)
            result = await client.call_tool("search", {"query": "tessera"})
            assert not result.is_error, result
            say(tools=tools, result=result.content[0].text, scope=auth.context.current_tokens.scope)


if __name__ == "__main__":
    flags = argparse.ArgumentParser()
    flags.add_argument("--mcp", required=True)
    flags.add_argument("--callback-port", type=int, required=True)
    flags.add_argument("--client-metadata-url")
    flags.add_argument("--name", default="Tessera e2e (Python SDK)")
    try:
        anyio.run(main, flags.parse_args())
    except Exception as error:  # the SDK's error, for the test's message
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
