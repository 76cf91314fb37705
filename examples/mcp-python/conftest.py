"""Fixtures: a Tessera with two clients, gRPC stubs made from the proto, and the example server.

Tessera is `target/debug/tessera` at the repository root (what `cargo test` builds), or
`$TESSERA_BIN`.
"""

import os
import pathlib
import socket
import subprocess
import sys
import time

import grpc
import httpx2
import pytest
from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, process: subprocess.Popen, what: str, log: pathlib.Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; see {log}")
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready at {url} after {seconds}s; see {log}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def stubs(tmp_path_factory):
    """tessera.v1 messages and stubs, generated with the protoc bundled in grpcio-tools."""
    out = tmp_path_factory.mktemp("stubs")
    well_known = pathlib.Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = ["protoc", f"-I{REPO / 'proto'}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}",
            "tessera/v1/authority.proto"]
    assert protoc.main(args) == 0, "protoc failed"
    sys.path.insert(0, str(out))
    from tessera.v1 import authority_pb2, authority_pb2_grpc

    return authority_pb2, authority_pb2_grpc


@pytest.fixture(scope="session")
def mcp_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def resource(mcp_port) -> str:
    """The example server's URL: its endpoint, and its resource URI (RFC 8707)."""
    return f"http://127.0.0.1:{mcp_port}/mcp"


@pytest.fixture(scope="session")
def tessera(tmp_path_factory, resource):
    """A Tessera on SQLite with an `orchestrator` (mint, revoke) and the MCP server's own
    client, whose resource is the server's URL."""
    binary = os.environ.get("TESSERA_BIN") or str(REPO / "target" / "debug" / "tessera")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no Tessera binary at {binary}: run `cargo build` or set TESSERA_BIN")
    tmp = tmp_path_factory.mktemp("tessera")
    keys = {}
    with open(tmp / "clients.toml", "w") as clients:
        for client, args in [("orchestrator", ["mint", "revoke"]), ("mcp-server", ["validate", "--resource", resource])]:
            made = subprocess.run([binary, "client-key", client, *args], stdout=clients, stderr=subprocess.PIPE,
                                  text=True, check=True)
            keys[client] = next(w for w in made.stderr.split() if w.startswith("tsk_"))
    port, log = free_port(), tmp / "tessera.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{port}", "--database-url", f"sqlite://{tmp / 't.db'}",
             "--clients", str(tmp / "clients.toml")],
            stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/readyz", process, "tessera", log)
        yield {"url": url, "address": f"127.0.0.1:{port}", "keys": keys}
    finally:
        stop(process)


@pytest.fixture(scope="session")
def authority(tessera, stubs, resource):
    """Mint and Revoke as the orchestrator."""
    pb, pb_grpc = stubs
    channel = grpc.insecure_channel(tessera["address"])
    stub = pb_grpc.TokenAuthorityStub(channel)
    metadata = [("authorization", f"Bearer {tessera['keys']['orchestrator']}")]

    class Authority:
        def mint(self, scopes: list[str], run_id: str, audience=(resource,), ttl: int = 300) -> str:
            request = pb.MintRequest(subject="user-42", audience=audience, run_id=run_id, scopes=scopes)
            request.ttl.FromSeconds(ttl)
            return stub.Mint(request, metadata=metadata).token

        def revoke(self, reason: str = "REVOKE_REASON_MANUAL", **target) -> int:
            return stub.Revoke(pb.RevokeRequest(reason=reason, **target), metadata=metadata).revoked

    yield Authority()
    channel.close()


@pytest.fixture(scope="session")
def mcp_url(tessera, tmp_path_factory, mcp_port, resource):
    """The example server, its own Tessera client `mcp-server`."""
    port = mcp_port
    env = dict(os.environ, TESSERA_URL=tessera["url"], TESSERA_CLIENT_ID="mcp-server",
               TESSERA_CLIENT_KEY=tessera["keys"]["mcp-server"])
    log = tmp_path_factory.mktemp("mcp") / "server.log"
    with open(log, "w") as output:
        process = subprocess.Popen([sys.executable, str(HERE / "server.py"), "--port", str(port)], env=env,
                                   stdout=output, stderr=output)
    try:
        metadata = f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"
        wait_until_ready(metadata, process, "server.py", log)
        yield resource
    finally:
        stop(process)

