#!/usr/bin/env python3
"""Server instructions per call, counted by callgrind, against two floors.

On a shared machine rates and latencies drift by 10-20% from run to run;
the instructions a binary executes for the same calls do not. This counts,
with `valgrind --tool=callgrind` on the server process only, the
instructions per call of each op of Tessera and of the two floors
`tessera-bench --floor` serves (a bare tonic server on the same crates
answering Validate from memory, `echo`, or from one sqlx SELECT by token
hash, `database`), and prints each as a ratio to its floor.

Each figure is the difference of a short and a long run, each against a
server of its own, divided by the difference in calls: start-up,
pre-minting and shut-down cancel out. PostgreSQL is spoken to in the
clear (`sslmode=disable`), 2 calls in flight over 2 connections.
BOUNDED Validate runs with a cache age longer than the run, so that no
refetch follows the clock.

    python3 bench/count.py                 # release build, 4 s and 12 s runs
    # the CI smoke (.ci/count): the debug build, short runs, a floor and
    # Tessera; asserts only that every run was counted (non-zero, parsed),
    # never a figure
    python3 bench/count.py --tessera target/debug/tessera --short 1 --long 2 --grants 10 \
        --ops database-floor,validate --smoke
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

from compare import ROOT, TESSERA, drop_database, free_port, psql, with_database

# op: (floor it is read against, server, tessera-bench flags). Server
# "tessera" is `tessera serve`; the others are `tessera-bench --floor`.
OPS = {
    "echo-floor": (None, "echo", ["--op", "validate"]),
    "database-floor": (None, "database", ["--op", "validate"]),
    "validate": ("database-floor", "tessera", ["--op", "validate"]),
    "validate-bounded": ("echo-floor", "tessera", ["--op", "validate", "--consistency", "bounded"]),
    "claim": ("database-floor", "tessera", ["--op", "claim"]),
    "claim-keyed": ("database-floor", "tessera", ["--op", "claim", "--claim-key"]),
    "mint": ("database-floor", "tessera", ["--op", "mint"]),
    "introspect": ("validate", "tessera", ["--op", "introspect", "--http", "1.1"]),
}


def wait_listening(port, process, limit=300):
    """Waits (boundedly) until something accepts on `port`; valgrind starts slowly."""
    deadline = time.time() + limit
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listened on {port} within {limit} s")


def instructions(path):
    """The total instructions (event Ir) of a callgrind output file."""
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no summary in {path}")


def count_once(args, op, seconds, tessera, bench_bin, url, out_dir):
    """One server under callgrind, one load of `seconds`: (instructions, calls)."""
    _, server_kind, flags = OPS[op]
    port = free_port()
    listen = f"127.0.0.1:{port}"
    if server_kind == "tessera":
        server_cmd = [tessera, "serve", "--listen", listen, "--database-url", url, "--no-migrate",
                      "--cache-max-age", "1h"]
    else:
        server_cmd = [bench_bin, "--floor", server_kind, "--listen", listen, "--database-url", url]
    out = os.path.join(out_dir, f"{op}-{seconds}.callgrind")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *server_cmd],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, server)
        bench = subprocess.run(
            [bench_bin, "--target", listen, *flags, "--concurrency", "2", "--connections", "2",
             "--duration", f"{seconds}s", "--warmup", "0s", "--grants", str(args.grants),
             "--server-pid", str(server.pid), "--json"],
            stdout=subprocess.PIPE, text=True, timeout=600,
        )
        if bench.returncode != 0:
            raise RuntimeError(f"tessera-bench failed for {op}")
        report = json.loads(bench.stdout)
        if report["calls"] == 0 or report["errors"]:
            raise RuntimeError(f"{op}: {report['calls']} calls, {report['errors']} errors: {report['outcomes']}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return instructions(out), report["calls"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
                        help="a PostgreSQL where a scratch database may be created")
    parser.add_argument("--short", type=int, default=4, help="seconds of load of the short run")
    parser.add_argument("--long", type=int, default=12, help="seconds of load of the long run")
    parser.add_argument("--grants", type=int, default=200, help="grants each run pre-mints")
    parser.add_argument("--ops", default=",".join(OPS), help=f"any of {', '.join(OPS)}")
    parser.add_argument("--tessera", help="the tessera binary, with tessera-bench beside it "
                        "(default: build and use target/release/tessera)")
    parser.add_argument("--smoke", action="store_true", help="only check that every op was counted")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    ops = args.ops.split(",")
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        parser.error(f"unknown ops {unknown}: choose from {', '.join(OPS)}")
    if args.long <= args.short:
        parser.error("--long must be longer than --short")

    tessera = args.tessera or TESSERA
    bench_bin = os.path.join(os.path.dirname(tessera), "tessera-bench")
    if not args.tessera:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "tessera", "--bin", "tessera-bench"],
                       cwd=ROOT, check=True)
    scratch = f"tessera_count_{os.getpid()}"
    url = with_database(args.database_url, scratch)
    url += ("&" if "?" in url else "?") + "sslmode=disable"
    psql(args.database_url, f"CREATE DATABASE {scratch}")
    try:
        subprocess.run([tessera, "migrate", "--database-url", url], check=True, capture_output=True)
        results = {}
        with tempfile.TemporaryDirectory(prefix="tessera-count-") as out_dir:
            for op in ops:
                (i0, c0), (i1, c1) = (count_once(args, op, s, tessera, bench_bin, url, out_dir)
                                      for s in (args.short, args.long))
                if c1 <= c0 and not args.smoke:
                    raise RuntimeError(f"{op}: the long run answered no more calls ({c1}) than the short ({c0})")
                # A smoke's runs are too short for the difference to mean
                # anything (a loaded machine may answer as many calls in
                # both); it checks that both were counted.
                per_call = round((i1 - i0) / (c1 - c0)) if c1 > c0 else None
                results[op] = {"instructions_per_call": per_call, "calls": [c0, c1], "instructions": [i0, i1]}
                print(f"{op}: {per_call} instructions per call ({c0} and {c1} calls, "
                      f"{i0} and {i1} instructions)", file=sys.stderr)
    finally:
        drop_database(args.database_url, scratch)

    print(f"\n{'op':<17} {'instructions/call':>17}  {'against':<15} {'ratio':>6}")
    for op, r in results.items():
        floor = OPS[op][0]
        r["floor"] = floor
        base = results.get(floor, {}).get("instructions_per_call")
        r["ratio"] = round(r["instructions_per_call"] / base, 2) if base and r["instructions_per_call"] else None
        print(f"{op:<17} {r['instructions_per_call'] or '':>17}  {floor or '':<15} {r['ratio'] or '':>6}")
    if args.json:
        print(json.dumps(results))
    if args.smoke:
        bad = [op for op, r in results.items() if min(r["instructions"]) <= 0 or min(r["calls"]) <= 0]
        if bad:
            sys.exit(f"not counted: {bad}")
        print("smoke: every op counted")


if __name__ == "__main__":
    main()
