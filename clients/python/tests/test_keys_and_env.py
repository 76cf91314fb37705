"""Client keys, roles and `from_env` against a Tessera with a clients file."""

from __future__ import annotations

import pathlib
import secrets
from typing import Iterator

import grpc
import pytest

from support import Database, Server, client_key
from tessera_client import (
    DEFAULT_URL,
    Client,
    ConfigError,
    Mint,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    Validate,
    credentials_pb,
)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """Tessera (SQLite) with an `orchestrator` (mint, revoke), a `gateway`
    (validate) and a `vault` (credentials); their keys."""
    tmp = tmp_path_factory.mktemp("keyed")
    keys, entries = {}, []
    for client, roles in [("orchestrator", ["mint", "revoke"]), ("gateway", ["validate"]),
                          ("vault", ["credentials"])]:
        keys[client], entry = client_key(client, *roles)
        entries.append(entry)
    (tmp / "seal.key").write_text(f"k1:{secrets.token_hex(32)}\n")
    server = Server(Database("sqlite", tmp), tmp, "--seal-key", str(tmp / "seal.key"), clients="\n".join(entries))
    yield server, keys
    server.stop()


def test_the_key_is_sent_and_roles_hold(keyed: tuple[Server, dict[str, str]], unique: str) -> None:
    server, keys = keyed
    with Client(server.url, key=keys["orchestrator"]) as orchestrator, \
            Client(server.url, key=keys["gateway"]) as gateway:
        minted = orchestrator.mint(Mint(unique, audience=["gateway"]))
        assert gateway.validate(Validate(minted.token)).valid
        with pytest.raises(PermissionDeniedError):
            gateway.mint(Mint(unique))
        # A grant another client issued is not there for a non-admin.
        with pytest.raises(NotFoundError):
            gateway.get_grant(minted.grant.grant_id)
    with Client(server.url) as anonymous, pytest.raises(UnauthenticatedError):
        anonymous.mint(Mint(unique))
    with Client(server.url, key="tsk_" + "x" * 49) as stranger, pytest.raises(UnauthenticatedError):
        stranger.validate(Validate(minted.token))


def test_the_credentials_stub_carries_the_key(keyed: tuple[Server, dict[str, str]], unique: str) -> None:
    server, keys = keyed
    with Client(server.url, key=keys["vault"]) as vault:
        stub = vault.credentials()
        stub.Put(credentials_pb.PutRequest(bearer_id=unique, name="github", secret={"access_token": b"at-1"}),
                 timeout=5)
        listed = stub.List(credentials_pb.ListRequest(bearer_id=unique), timeout=5)
        assert [c.name for c in listed.credentials] == ["github"]
    with Client(server.url) as anonymous, pytest.raises(grpc.RpcError) as refused:
        anonymous.credentials().List(credentials_pb.ListRequest(bearer_id=unique), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_from_env(keyed: tuple[Server, dict[str, str]], unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    server, keys = keyed
    monkeypatch.setenv("TESSERA_URL", server.url)
    monkeypatch.setenv("TESSERA_KEY", keys["orchestrator"])
    monkeypatch.setenv("TESSERA_CA", "")  # empty is unset
    with Client.from_env(timeout=3) as tessera:
        assert tessera.url == server.url and tessera.timeout == 3
        assert tessera.mint(Mint(unique)).grant.issued_by == "orchestrator"
    # An explicit mapping instead of os.environ; the defaults.
    assert Client.from_env({}).url == DEFAULT_URL
    assert Client.from_env({"TESSERA_URL": "tessera.internal:7000"}).url == "http://tessera.internal:7000"
    with pytest.raises(ConfigError, match="TLS settings"):
        Client.from_env({"TESSERA_URL": "http://127.0.0.1:1", "TESSERA_CA": "/etc/ca.crt"})
    with pytest.raises(ConfigError, match="ca_file '/nonexistent/ca.crt'"):
        Client.from_env({"TESSERA_URL": "https://127.0.0.1:1", "TESSERA_CA": "/nonexistent/ca.crt"})


def test_bad_settings_name_the_setting(tmp: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="scheme must be http or https"):
        Client("grpc://127.0.0.1:1")
    with pytest.raises(ConfigError, match="port"):
        Client("http://127.0.0.1:99999")
    with pytest.raises(ConfigError, match="only scheme://host:port"):
        Client("http://127.0.0.1:1/tessera")
    with pytest.raises(ValueError, match="key: the client key must be"):
        Client("127.0.0.1:1", key="tsk_with a space")
    with pytest.raises(ValueError, match="timeout"):
        Client("127.0.0.1:1", timeout=0)
    assert Client("[::1]:50051").url == "http://[::1]:50051"
    assert Client("https://tessera.example/").url == "https://tessera.example"
