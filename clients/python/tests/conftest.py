"""Fixtures: a Tessera in dev mode per database (SQLite and PostgreSQL), and a
client to it. Other servers (with keys, with TLS) are made by the tests that
need them, from `support`."""

from __future__ import annotations

import pathlib
import uuid
from typing import Iterator

import pytest

from support import Database, Server
from tessera_client import Client


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Tessera in dev mode (every caller is `dev` with every role), one per
    database for the whole session: each test names its own subjects and runs."""
    tmp = tmp_path_factory.mktemp(request.param)
    database = Database(request.param, tmp)
    served = None
    try:
        served = Server(database, tmp)
        yield served
    finally:
        if served is not None:
            served.stop()
        database.drop()


@pytest.fixture
def tessera(server: Server) -> Iterator[Client]:
    with Client(server.url) as client:
        yield client


@pytest.fixture
def unique() -> str:
    """A name no other test uses (a run id, a subject)."""
    return f"py-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def tmp(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path
