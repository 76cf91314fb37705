#!/usr/bin/env python3
"""compare.py cleans up after itself when pgbench fails.

A pgbench that fails as a full PostgreSQL makes it fail ("sorry, too many
clients already") stands first on PATH, and a psql whose first DROP
DATABASE meets the same full PostgreSQL (the slots of the failed run not yet
given back); compare.py must fail, say why, and leave neither its scratch
database nor its Tessera server behind. Needs the debug binaries (`cargo
build`) and PostgreSQL at DATABASE_URL.

    python3 bench/test_compare.py
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
FAILING_PGBENCH = """#!/bin/sh
echo 'pgbench: error: connection to server failed: FATAL:  sorry, too many clients already' >&2
exit 1
"""
# Refuses the first DROP DATABASE as a full PostgreSQL would; anything else
# goes to the real psql.
PSQL_FULL_ONCE = """#!/bin/sh
case "$*" in
  *"DROP DATABASE"*)
    if [ ! -e "$REFUSED_ONCE" ]; then
      touch "$REFUSED_ONCE"
      echo 'psql: error: connection to server failed: FATAL:  sorry, too many clients already' >&2
      exit 2
    fi;;
esac
exec "$REAL_PSQL" "$@"
"""


def processes_naming(text):
    """Pids of the processes whose command line holds `text`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def databases():
    out = subprocess.run(["psql", "-X", "-At", URL, "-c", "SELECT datname FROM pg_database"],
                         check=True, capture_output=True, text=True)
    return set(out.stdout.split())


class PgbenchFails(unittest.TestCase):
    def test_the_scratch_database_is_dropped(self):
        with tempfile.TemporaryDirectory() as bin_dir:
            for name, script in (("pgbench", FAILING_PGBENCH), ("psql", PSQL_FULL_ONCE)):
                path = os.path.join(bin_dir, name)
                with open(path, "w") as f:
                    f.write(script)
                os.chmod(path, 0o755)
            refused_once = os.path.join(bin_dir, "refused-once")
            env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"], DATABASE_URL=URL,
                       REAL_PSQL=shutil.which("psql"), REFUSED_ONCE=refused_once)
            run = subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "bench", "compare.py"), "--rows", "100", "--hot", "10",
                 "--single", "10", "--duration", "1", "--warmup", "0", "--clients", "2", "--ops", "validate",
                 "--tessera", os.path.join(ROOT, "target", "debug", "tessera")],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            scratch = f"tessera_compare_{run.pid}"
            _, err = run.communicate(timeout=600)
            self.assertTrue(os.path.exists(refused_once), "the first DROP was refused")
        self.assertNotEqual(run.returncode, 0, "compare.py failed with pgbench")
        self.assertIn("pgbench failed", err)
        self.assertIn("too many clients", err)
        self.assertIn("filling grants", err, "it got as far as its scratch database")
        self.assertNotIn(scratch, databases(), "the scratch database was dropped")
        self.assertEqual(processes_naming(scratch), [], "the Tessera server was stopped")


if __name__ == "__main__":
    unittest.main()
