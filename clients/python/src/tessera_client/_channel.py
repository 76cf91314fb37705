"""How to reach Tessera: the URL, TLS, the key and the channel's options,
checked once and shared by the sync and asyncio clients."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional, Union
from urllib.parse import urlsplit

import grpc

from .errors import ConfigError
from .secret import ClientKey

DEFAULT_URL = "http://127.0.0.1:50051"
"""Where Tessera listens when `TESSERA_URL` is not set (its own default)."""

PathLike = Union[str, "os.PathLike[str]"]

# Keepalive as the Rust client sets it: a dead connection is noticed within
# 40 s even when no call is under way. The reconnect backoff is capped at 5 s
# (gRPC's default grows to 120 s), so a client finds Tessera again soon after
# a restart instead of failing every call for minutes.
CHANNEL_OPTIONS: list[tuple[str, Union[int, str]]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    ("grpc.primary_user_agent", "tessera-client-python/0.1.0"),
]


@dataclass(frozen=True)
class Settings:
    """What a channel is made from. Holds no secret in its `repr`."""

    url: str
    target: str
    tls: Optional[grpc.ChannelCredentials]
    key: Optional[ClientKey]
    tls_domain: Optional[str]

    def options(self) -> list[tuple[str, Union[int, str]]]:
        options = list(CHANNEL_OPTIONS)
        if self.tls_domain:
            options.append(("grpc.ssl_target_name_override", self.tls_domain))
        return options

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (self.key.header(),) if self.key else ()


def settings(
    url: str,
    *,
    key: Optional[str],
    ca_file: Optional[PathLike],
    ca_pem: Optional[bytes],
    client_cert: Optional[tuple[bytes, bytes]],
    tls_domain: Optional[str],
) -> Settings:
    """Checks the settings, naming the one that is wrong."""
    if not isinstance(url, str):
        raise ConfigError(f"url: expected str, got {type(url).__name__}")
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)

    def bad(why: str) -> ConfigError:
        return ConfigError(f"url {url!r}: {why}")

    if parts.scheme not in ("http", "https"):
        raise bad("the scheme must be http or https")
    if parts.path or parts.query or parts.fragment or parts.username:
        raise bad("give only scheme://host:port")
    try:
        port = parts.port
    except ValueError as err:
        raise bad(f"the port is not a number in range ({err})") from None
    host = parts.hostname
    if not host:
        raise bad("no host")
    port = port or (443 if parts.scheme == "https" else 80)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    client_key = ClientKey(key) if key is not None else None
    tls_asked = ca_file is not None or ca_pem is not None or client_cert is not None or tls_domain is not None
    tls = None
    if parts.scheme == "https":
        roots = b""
        if ca_pem is not None:
            roots += bytes(ca_pem)
        if ca_file is not None:
            try:
                with open(ca_file, "rb") as file:
                    roots += b"\n" + file.read()
            except OSError as err:
                raise ConfigError(f"ca_file {os.fspath(ca_file)!r}: {err.strerror or err}") from None
            if b"-----BEGIN CERTIFICATE-----" not in roots:
                raise ConfigError(f"ca_file {os.fspath(ca_file)!r}: no PEM certificate in it")
        cert_chain, private_key = client_cert if client_cert is not None else (None, None)
        tls = grpc.ssl_channel_credentials(
            root_certificates=roots or None,  # None: gRPC's own roots
            private_key=private_key,
            certificate_chain=cert_chain,
        )
    elif tls_asked:
        raise bad("TLS settings (ca_file, ca_pem, client_cert, tls_domain) need an https:// URL")
    return Settings(url=url, target=target, tls=tls, key=client_key, tls_domain=tls_domain)


def from_environ(environ: Mapping[str, str]) -> dict[str, Optional[str]]:
    """`TESSERA_URL` (default http://127.0.0.1:50051), `TESSERA_KEY` and
    `TESSERA_CA` (a PEM file path), as the Rust client reads them: empty is
    unset."""

    def var(name: str) -> Optional[str]:
        return environ.get(name) or None

    return {"url": var("TESSERA_URL") or DEFAULT_URL, "key": var("TESSERA_KEY"), "ca_file": var("TESSERA_CA")}


def unreachable(settings: Settings, timeout: float) -> str:
    """Why `wait_ready` gave up, with the likely causes."""
    hint = (
        "is it running, and is its certificate signed by the CA given (ca_file, TESSERA_CA)?"
        if settings.tls
        else "is it running there, and without TLS (a TLS port needs an https:// URL)?"
    )
    return f"cannot connect to Tessera at {settings.url} within {timeout:g} s: {hint}"
