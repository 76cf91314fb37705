"""A real Tessera for the tests, and TCP proxies that lose what the tests say.

Tessera is the repository's `target/debug/tessera` (what `cargo test` builds),
or `$TESSERA_BIN`; it serves SQLite in a temporary directory or a fresh
PostgreSQL schema at `$DATABASE_URL`, on an ephemeral loopback port.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import subprocess
import threading
import uuid
from typing import Optional

REPO = pathlib.Path(__file__).resolve().parents[3]
POSTGRES = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"


def tessera_bin() -> str:
    binary = os.environ.get("TESSERA_BIN") or str(REPO / "target" / "debug" / "tessera")
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"no Tessera binary at {binary}: run `cargo build` or set TESSERA_BIN")
    return binary


def psql(sql: str) -> None:
    subprocess.run(["psql", POSTGRES, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True)


class Database:
    """A database of its own: a SQLite file in `tmp`, or a fresh PostgreSQL
    schema, dropped by `drop()`."""

    def __init__(self, backend: str, tmp: pathlib.Path) -> None:
        self.backend = backend
        self.schema: Optional[str] = None
        if backend == "sqlite":
            self.url = f"sqlite://{tmp / 'tessera.db'}"
        else:
            self.schema = f"py_{uuid.uuid4().hex[:16]}"
            psql(f"CREATE SCHEMA {self.schema}")
            sep = "&" if "?" in POSTGRES else "?"
            self.url = f"{POSTGRES}{sep}options=-c%20search_path%3D{self.schema}&application_name={self.schema}"

    def drop(self) -> None:
        if self.schema:
            psql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


class Server:
    """`tessera serve` on 127.0.0.1:0; `url` is where it listens, read from its
    "serving" log line."""

    def __init__(self, database: Database, tmp: pathlib.Path, *args: str, clients: Optional[str] = None) -> None:
        command = [tessera_bin(), "serve", "--listen", "127.0.0.1:0", "--log-format", "json",
                   "--database-url", database.url, *args]
        if clients is not None:
            (tmp / "clients.toml").write_text(clients)
            command += ["--clients", str(tmp / "clients.toml")]
        # The server reads TESSERA_* (and may read DATABASE_URL): only the flags count here.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_") and k != "DATABASE_URL"}
        env["RUST_LOG"] = "info"
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, env=env)
        self.log: list[str] = []
        serving = threading.Event()
        self._addr = ""

        def read() -> None:
            # Until the "serving" line, then on, so the server never blocks on a full pipe.
            assert self.process.stderr is not None
            for raw in self.process.stderr:
                line = raw.decode(errors="replace")
                self.log.append(line)
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("message") == "serving":
                    self._addr = entry["addr"]
                    serving.set()
            serving.set()

        threading.Thread(target=read, daemon=True).start()
        if not serving.wait(60) or not self._addr:
            self.stop()
            raise RuntimeError("tessera did not serve:\n" + "".join(self.log[-20:]))
        host, port = self._addr.rsplit(":", 1)
        self.address = (host, int(port))
        self.url = f"{'https' if '--tls-cert' in args else 'http'}://{self._addr}"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def client_key(client: str, *roles: str) -> tuple[str, str]:
    """A key and its clients-file entry, from `tessera client-key`."""
    made = subprocess.run([tessera_bin(), "client-key", client, *roles], capture_output=True, text=True, check=True)
    key = next(word for word in made.stderr.split() if word.startswith("tsk_"))
    return key, made.stdout


def _pipe(source: socket.socket, sink: socket.socket, on_bytes) -> None:  # type: ignore[no-untyped-def]
    """Copies `source` to `sink` on a thread of its own; `on_bytes(chunk)`
    returns what to forward (b"" forwards nothing)."""

    def run() -> None:
        try:
            while chunk := source.recv(16 * 1024):
                forward = on_bytes(chunk)
                if forward:
                    sink.sendall(forward)
        except OSError:
            pass
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=run, daemon=True).start()


class Proxy:
    """A TCP proxy to `upstream`. Its first connection misbehaves as told;
    later connections forward both ways.

    - `refuse_first`: the first connection is closed as soon as it is
      accepted (no byte of HTTP/2 is exchanged: the request never leaves).
    - `lose_after`: once the client has sent these bytes (a request's token or
      subject, plain in the HTTP/2 DATA frame), every reply on that connection
      is kept in `dropped` instead of forwarded: a reply lost on the wire.
      With `cut_on`, the connection is cut as soon as the dropped bytes hold
      `cut_on` (the reply to the request was made, and lost); without, it
      stays open and silent.

    `sent` holds all the client sent, per connection.
    """

    def __init__(self, upstream: tuple[str, int], *, refuse_first: bool = False,
                 lose_after: Optional[bytes] = None, cut_on: Optional[bytes] = None) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self._listener.getsockname()[1]
        self.dropped = bytearray()
        self.sent: list[bytearray] = []
        self.cut = threading.Event()
        self._upstream = upstream
        self._refuse_first = refuse_first
        self._lose_after = lose_after
        self._cut_on = cut_on
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                first = not self.sent
                self.sent.append(bytearray())
                sent = self.sent[-1]
            if first and self._refuse_first:
                client.close()
                continue
            server = socket.create_connection(self._upstream)
            self._serve(client, server, sent, misbehave=first and self._lose_after is not None)

    def _serve(self, client: socket.socket, server: socket.socket, sent: bytearray, misbehave: bool) -> None:
        losing = threading.Event()

        def upstream(chunk: bytes) -> bytes:
            with self._lock:
                sent.extend(chunk)
                if misbehave and self._lose_after is not None and self._lose_after in sent:
                    losing.set()  # before forwarding: no reply to it can get through
            return chunk

        def downstream(chunk: bytes) -> bytes:
            if not losing.is_set():
                return chunk
            with self._lock:
                self.dropped.extend(chunk)
                cut = self._cut_on is not None and self._cut_on in self.dropped
            if cut and not self.cut.is_set():
                self.cut.set()
                for end in (client, server):
                    try:
                        end.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            return b""

        _pipe(client, server, upstream)
        _pipe(server, client, downstream)

    def count(self, marker: bytes) -> int:
        """How many times the client sent `marker`, over every connection."""
        with self._lock:
            return sum(bytes(sent).count(marker) for sent in self.sent)

    def claim_keys(self) -> list[str]:
        """The claim keys the client sent: ClaimRequest field 4, 64 hex digits."""
        with self._lock:
            return [key.decode() for sent in self.sent for key in re.findall(rb"\x22\x40([0-9a-f]{64})", bytes(sent))]

    def close(self) -> None:
        self._listener.close()
