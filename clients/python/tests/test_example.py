"""examples/claim.py, as README runs it, against the real server."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from support import Server

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "claim.py"


def test_the_example_runs(server: Server) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_URL"] = server.url
    ran = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("minted grt_") and lines[0].endswith("Token(<redacted>)"), lines
    assert lines[1:] == ["valid: True", "claimed: True payload: secret-id-7", "after the claim: DENIAL_TOKEN_UNKNOWN",
                         "revoked: 0"], lines
