"""An MCP server (official Python SDK, `mcp` 2.x) whose bearer tokens are Tessera's.

The SDK asks a `TokenVerifier` who a bearer is; this one asks Tessera's RFC 7662
endpoint, authenticated as this server's own Tessera client, and takes
`AccessToken.resource` from the `aud` entry that is this server's resource URI
(RFC 8707), which the SDK then checks (`validate_token_resource`). Each tool
needs a scope of its own, checked before the call runs (403 insufficient_scope).

    TESSERA_URL=http://127.0.0.1:50051 TESSERA_CLIENT_ID=mcp-server \
    TESSERA_CLIENT_KEY=tsk_... python server.py --port 8000
"""

import argparse
import json
import os
from urllib.parse import urlsplit, urlunsplit

import httpx2
import uvicorn
from starlette.middleware import Middleware

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer


def canonical(uri: str) -> str:
    """The form Tessera keeps resource URIs in: lower-case scheme and host, no default
    port, no fragment, no trailing slash unless it is the whole path."""
    parts = urlsplit(uri)
    scheme, netloc = parts.scheme.lower(), parts.netloc.lower()
    default_port = {"https": ":443", "http": ":80"}.get(scheme)
    if default_port and netloc.endswith(default_port):
        netloc = netloc[: -len(default_port)]
    return urlunsplit((scheme, netloc, parts.path.rstrip("/") or "/", parts.query, ""))


class TesseraVerifier:
    """`TokenVerifier`: RFC 7662 introspection at Tessera, as client `client_id`."""

    def __init__(self, tessera_url: str, client_id: str, client_key: str, resource: str):
        self.resource = canonical(resource)
        self.http = httpx2.AsyncClient(base_url=tessera_url, auth=(client_id, client_key), timeout=5)

    async def verify_token(self, token: str) -> AccessToken | None:
        response = await self.http.post("/oauth2/introspect", data={"token": token})
        response.raise_for_status()  # a bad client key or Tessera down is a 500 here, not the bearer's 401
        claims = response.json()
        # Tessera answers {"active": false} to every refusal: revoked, expired, not for this client.
        if not claims.pop("active"):
            return None
        aud = claims.pop("aud", [])
        return AccessToken(
            token=token,
            client_id=claims.pop("client_id"),  # the client that minted it
            scopes=claims.pop("scope", "").split(),
            expires_at=claims.pop("exp", None),
            # The `aud` entry that is this server's URI; none: the SDK refuses (401).
            resource=next((a for a in aud if "://" in a and canonical(a) == self.resource), None),
            subject=claims.pop("sub", None),
            claims=claims,  # iss, jti (grant id), run_id, labels, iat, use counts
        )


def granted(scopes: list[str], needed: str) -> bool:
    """Tessera's rule: exactly, or by a family (`tool:*` grants `tool:admin`)."""
    return any(s == needed or (s.endswith(":*") and needed.startswith(s[:-1])) for s in scopes)


class ToolScopes:
    """ASGI middleware, inside the SDK's bearer authentication: a `tools/call` whose
    token lacks that tool's scope gets 403 with `WWW-Authenticate: Bearer
    error="insufficient_scope", scope="..."` (RFC 6750 3.1; MCP authorization,
    "Runtime Insufficient Scope Errors"), like the SDK's server-wide `required_scopes`."""

    def __init__(self, app, tool_scopes: dict[str, str], resource_metadata_url: str, max_body: int = 4 << 20):
        self.app, self.tool_scopes, self.metadata, self.max_body = app, tool_scopes, resource_metadata_url, max_body

    async def __call__(self, scope, receive, send):
        user = scope.get("user")
        if scope["type"] != "http" or scope["method"] != "POST" or not isinstance(user, AuthenticatedUser):
            return await self.app(scope, receive, send)  # no token: the SDK answers 401
        chunks, size, more = [], 0, True
        while more and size <= self.max_body:  # a larger body is the SDK's to refuse
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([*chunks, message], receive), send)
            chunks.append(message)
            size, more = size + len(message.get("body", b"")), message.get("more_body", False)
        if not more:
            for needed in self.needed_scopes(b"".join(m.get("body", b"") for m in chunks)):
                if not granted(user.scopes, needed):
                    return await self.forbid(send, needed)
        await self.app(scope, _replay(chunks, receive), send)

    def needed_scopes(self, body: bytes) -> list[str]:
        """The scopes of the tools a JSON-RPC body calls; anything else is the SDK's to judge."""
        try:
            messages = json.loads(body)
        except ValueError:
            return []
        needed = []
        for m in messages if isinstance(messages, list) else [messages]:
            if isinstance(m, dict) and m.get("method") == "tools/call" and isinstance(m.get("params"), dict):
                name = m["params"].get("name")
                if isinstance(name, str) and name in self.tool_scopes:
                    needed.append(self.tool_scopes[name])
        return needed

    async def forbid(self, send, needed: str):
        challenge = (f'Bearer error="insufficient_scope", scope="{needed}", '
                     f'error_description="Required scope: {needed}", resource_metadata="{self.metadata}"')
        body = json.dumps({"error": "insufficient_scope", "error_description": f"Required scope: {needed}"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"www-authenticate", challenge.encode())]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(messages, receive):
    """A `receive` that hands back what was already read, then the rest."""
    pending = list(messages)

    async def replayed():
        return pending.pop(0) if pending else await receive()

    return replayed


def build_app(tessera_url: str, client_id: str, client_key: str, public_url: str, host: str = "127.0.0.1"):
    auth = AuthSettings(issuer_url=tessera_url, resource_server_url=public_url, validate_token_resource=True)
    verifier = TesseraVerifier(tessera_url, client_id, client_key, public_url)
    mcp = MCPServer("tessera-example", token_verifier=verifier, auth=auth)
    tool_scopes: dict[str, str] = {}

    def tool(needed: str):
        def register(fn):
            tool_scopes[fn.__name__] = needed
            return mcp.tool()(fn)
        return register

    @tool("tool:search")
    def search(query: str) -> str:
        """Search the index."""
        return f"3 results for {query!r}"

    @tool("tool:admin")
    def purge_index() -> str:
        """Empty the index."""
        return "index purged"

    app = mcp.streamable_http_app(host=host)  # on loopback the SDK turns DNS-rebinding protection on
    # Appended, so it runs inside the SDK's AuthenticationMiddleware and sees the token's scopes
    # (Starlette's add_middleware would put it outside, before authentication).
    metadata = str(build_resource_metadata_url(auth.resource_server_url))
    app.user_middleware.append(Middleware(ToolScopes, tool_scopes=tool_scopes, resource_metadata_url=metadata))
    return app


if __name__ == "__main__":
    flags = argparse.ArgumentParser()
    flags.add_argument("--host", default="127.0.0.1")
    flags.add_argument("--port", type=int, default=8000)
    args = flags.parse_args()
    public_url = os.environ.get("MCP_PUBLIC_URL", f"http://{args.host}:{args.port}/mcp")
    app = build_app(os.environ["TESSERA_URL"], os.environ["TESSERA_CLIENT_ID"], os.environ["TESSERA_CLIENT_KEY"],
                    public_url, args.host)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
