#!/usr/bin/env python3
"""Tessera next to PostgreSQL's own limit, in one run on one machine.

For each hot operation (validate, claim, mint) this runs pgbench with the
exact statements Tessera executes for it (printed by `tessera-bench
--print-sql`), on the same grants table with the same number of rows and the
same client count, then Tessera itself through `tessera-bench`, and prints
each pair and the ratio Tessera/pgbench.

It creates a scratch database, starts one Tessera server on a free port,
and removes both when it ends, whatever happens.

    python3 bench/compare.py                       # 1M rows, 64 clients, 10 s each
    python3 bench/compare.py --rows 100000 --duration 5 --ops validate,claim-single
    # the CI smoke: a few thousand rows, one second per op, the debug binary,
    # few connections (it asserts only that every op answers)
    python3 bench/compare.py --rows 3000 --hot 500 --single 500 --duration 1 --warmup 0 \\
        --clients 4 --server-args "--db-max-connections 4" --tessera target/debug/tessera
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESSERA = os.path.join(ROOT, "target", "release", "tessera")

# pgbench expressions for each statement parameter, by statement name. Hot
# rows (the ones pgbench reads and claims) have grant_id 'hot<i>' and
# token_hash sha256('hot<i>'); single-use rows 'single<i>'; minted rows and
# claim keys get random values per transaction (:n).
KEY = "sha256((:client_id || '-' || :n)::bytea)"


def params(name, rows):
    grant_id = f"'{rows}' || :i"
    token_hash = f"sha256(('{rows}' || :i)::bytea)"
    return {
        "find": {1: token_hash},
        "find_keyed": {1: token_hash, 2: "'dev'", 3: KEY},
        "consume": {1: grant_id},
        "consume_keyed": {1: grant_id, 2: "'dev'", 3: KEY},
        "insert": {
            1: "'m' || :client_id || '-' || :n",
            2: "sha256(('m' || :client_id || '-' || :n)::bytea)",
            3: "'tsr_abcd'",
            4: "'bench-subject'",
            5: "'{}'::text[]",
            6: "'bench-run'",
            # chr(58) is ':', which pgbench would read as the start of a variable.
            7: "ARRAY['bench' || chr(58) || '*', 'tool' || chr(58) || 'search']",
            8: "'{}'::jsonb",
            9: "'\\x'::bytea",
            10: "0",
            11: "'dev'",
            12: "3600000000",
            13: "false",
            14: "NULL::text",
            15: "NULL::text",
        },
    }[name]


def pgbench_script(statements, rows, count):
    """A pgbench script running `statements` ([name, sql] pairs) once per
    transaction on random rows of `rows` ('hot' or 'single', `count` of them)."""
    lines = [f"\\set i random(1, {count})", "\\set n random(1, 1000000000000)"]
    for name, statement in statements:
        values = params(name, rows)
        statement = re.sub(r"\$(\d+)", lambda m: values[int(m.group(1))], statement)
        lines.append(statement + ";")
    return "\n".join(lines) + "\n"


# What each op runs: the statements pgbench replays (by Tessera op), the rows
# they use, and the flags of `tessera-bench`.
OPS = {
    "validate": ("validate", "hot", ["--op", "validate"]),
    "validate-bounded": ("validate", "hot", ["--op", "validate", "--consistency", "bounded"]),
    "validate-fresh": ("validate", "hot", ["--op", "validate"]),
    "validate-2": ("validate", "hot", ["--op", "validate"]),
    "claim": ("claim", "hot", ["--op", "claim"]),
    "claim-single": ("claim", "single", ["--op", "claim", "--max-uses", "1"]),
    "claim-keyed": ("claim-keyed", "hot", ["--op", "claim", "--claim-key"]),
    "mint": ("mint", "hot", ["--op", "mint"]),
    # RFC 7662 introspection (a FULL Validate over HTTP), as the MCP SDKs'
    # verifiers call it: HTTP/1.1 on kept-alive connections, one per call in
    # flight; and HTTP/2 over --connections, as gRPC.
    "introspect": ("validate", "hot", ["--op", "introspect", "--http", "1.1"]),
    "introspect-h2": ("validate", "hot", ["--op", "introspect", "--http", "2"]),
}


def psql(url, sql):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True)


def psql_value(url, sql):
    out = subprocess.run(["psql", "-X", "-At", url, "-c", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def with_database(url, name):
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return base + ("?" + query if query else "")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pids):
    """CPU seconds used so far by these processes (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids():
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "postgres":
                    pids.append(pid)
        except OSError:
            pass
    return pids


def run_pgbench(url, script, clients, duration):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    try:
        bench = subprocess.Popen(
            ["pgbench", "-n", "-M", "prepared", "-f", f.name, "-c", str(clients), "-j", "2",
             "-T", str(duration), url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        # PostgreSQL's CPU while pgbench runs, sampled while its backends
        # live (they take their CPU time with them when they exit).
        samples = []
        while bench.poll() is None:
            samples.append((time.time(), cpu_seconds(postgres_pids()), cpu_seconds([bench.pid])))
            time.sleep(0.25)
        out, err = bench.communicate()
    finally:
        os.unlink(f.name)
    if bench.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{err[-2000:]}")
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    # Per pgbench transaction, beside Tessera's per call: what the database
    # itself spends on each side. The first second (connecting) and the
    # last sample (backends exiting) are left out.
    # pgbench's own CPU the same way: the load generator's cost per call.
    inside = samples[4:-1]
    pg_us = client_us = None
    if len(inside) >= 2 and tps:
        (t0, c0, b0), (t1, c1, b1) = inside[0], inside[-1]
        pg_us = round((c1 - c0) / (t1 - t0) * 1e6 / tps)
        client_us = round((b1 - b0) / (t1 - t0) * 1e6 / tps)
    return tps, latency, pg_us, client_us


def fill(url, hot, single, filler):
    print(f"filling grants: {hot} hot rows and {single} single-use rows for pgbench + {filler} others",
          file=sys.stderr)
    columns = """INSERT INTO grants (grant_id, token_hash, token_hint, subject, audience, run_id, scopes,
                                     labels, sealed_payload, max_uses, issued_by, issued_at, expires_at)"""
    for name, count, max_uses in (("hot", hot, 0), ("single", single, 1), ("fill", filler, 0)):
        psql(url, f"""{columns}
            SELECT '{name}' || i, sha256(('{name}' || i)::bytea), 'tsr_abcd', 'bench-subject-' || (i % 100),
                   '{{}}', 'bench-run-' || (i % 1000), '{{bench:*,tool:search}}', '{{}}', '\\x', {max_uses},
                   'dev', tessera_now_us(), tessera_now_us() + 86400000000
            FROM generate_series(1, {count}) i""")
    psql(url, "VACUUM ANALYZE grants")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
                        help="a PostgreSQL where a scratch database may be created")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the grants table")
    parser.add_argument("--hot", type=int, default=10_000, help="rows the load touches (Tessera pre-mints as many)")
    parser.add_argument("--single", type=int, default=0,
                        help="single-use rows for claim-single and fresh grants for validate-fresh, on each "
                             "side (default: enough for 12000 calls a second)")
    parser.add_argument("--clients", type=int, default=64, help="pgbench clients = Tessera calls in flight")
    parser.add_argument("--connections", type=int, default=4, help="Tessera bench HTTP/2 connections")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before each Tessera measurement")
    parser.add_argument("--ops", default=",".join(OPS), help=f"any of {', '.join(OPS)} "
                        "(validate-2: at 2 in flight; -fresh: grants never validated before)")
    parser.add_argument("--server-args", default="", help="extra flags for the Tessera server")
    parser.add_argument("--tessera", help="the tessera binary, with tessera-bench beside it "
                        "(default: build and use target/release/tessera)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    ops = args.ops.split(",")
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        parser.error(f"unknown ops {unknown}: choose from {', '.join(OPS)}")
    single = args.single or 12000 * (args.duration + args.warmup)

    tessera = args.tessera or TESSERA
    # The load generator is built beside the server.
    bench_bin = os.path.join(os.path.dirname(tessera), "tessera-bench")
    if not args.tessera:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    statements = json.loads(subprocess.run([bench_bin, "--print-sql"], check=True,
                                           capture_output=True, text=True).stdout)
    scratch = f"tessera_compare_{os.getpid()}"
    url = with_database(args.database_url, scratch)
    psql(args.database_url, f"CREATE DATABASE {scratch}")
    try:
        run(args, ops, single, tessera, bench_bin, statements, url)
    finally:
        # Whatever failed (pgbench refused by a full PostgreSQL, the server,
        # Ctrl-C), the scratch database goes.
        drop_database(args.database_url, scratch)


def drop_database(admin_url, name):
    """Drops the scratch database, retrying for a while: the failure that
    brought us here may be PostgreSQL's connection slots being full, and the
    backends of a failed run take a moment to go."""
    for _ in range(30):
        done = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", admin_url, "-c",
                               f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                              capture_output=True, text=True)
        if done.returncode == 0:
            return
        time.sleep(1)
    print(f"could not drop the scratch database {name}: {done.stderr.strip()}", file=sys.stderr)


def run(args, ops, single, tessera, bench_bin, statements, url):
    """Fills the scratch database at `url`, runs one Tessera server on it
    and measures each op; the server is stopped however this ends."""
    server = None
    try:
        subprocess.run([tessera, "migrate", "--database-url", url], check=True, capture_output=True)
        fill(url, args.hot, single, max(args.rows - args.hot - single, 0))
        table_bytes = int(psql_value(url, "SELECT pg_total_relation_size('grants')"))
        rows = int(psql_value(url, "SELECT count(*) FROM grants"))

        port = free_port()
        server = subprocess.Popen(
            [tessera, "serve", "--listen", f"127.0.0.1:{port}", "--database-url", url, "--no-migrate",
             *args.server_args.split()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            if subprocess.run([tessera, "health", "--addr", f"127.0.0.1:{port}"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the Tessera server did not become SERVING")

        results = []
        for op in ops:
            tessera_op, kind, flags = OPS[op]
            clients = 2 if op == "validate-2" else args.clients
            count = single if kind == "single" else args.hot
            script = pgbench_script(statements[tessera_op], kind, count)
            tps, pg_latency, pg_us, pgbench_us = run_pgbench(url, script, clients, args.duration)
            grants = single if op in ("claim-single", "validate-fresh") else args.hot

            bench = subprocess.Popen(
                [bench_bin, "--target", f"127.0.0.1:{port}", *flags,
                 "--concurrency", str(clients), "--connections", str(min(args.connections, clients)),
                 "--duration", f"{args.duration}s", "--warmup", f"{args.warmup}s", "--grants", str(grants),
                 "--server-pid", str(server.pid), "--json"],
                stdout=subprocess.PIPE, text=True,
            )
            # CPU of each side, sampled while the bench runs; the measured
            # window (after pre-minting and warm-up) comes from its report.
            samples = []
            while bench.poll() is None:
                samples.append((time.time(), cpu_seconds([server.pid]), cpu_seconds([bench.pid]),
                                cpu_seconds(postgres_pids())))
                time.sleep(0.25)
            out = bench.communicate()[0]
            if bench.returncode != 0:
                raise RuntimeError(f"tessera-bench failed for {op}")
            report = json.loads(out)
            if report["calls"] == 0 or report["errors"]:
                raise RuntimeError(f"{op}: {report['calls']} calls answered, {report['errors']} errors: "
                                   f"{report['outcomes']}")
            start, end = report["window_unix_ms"][0] / 1000, report["window_unix_ms"][1] / 1000
            inside = [s for s in samples if start <= s[0] <= end] or samples[-2:]
            first, last = inside[0], inside[-1]
            span = max(last[0] - first[0], 1e-9)
            share = [round((last[k] - first[k]) / span, 2) for k in (1, 2, 3)]
            rps = report["rps"]
            results.append({
                "op": op, "clients": clients, "pgbench_tps": round(tps), "pgbench_latency_ms": pg_latency,
                "pgbench_postgres_cpu_us_per_call": pg_us, "pgbench_cpu_us_per_call": pgbench_us,
                "tessera_rps": round(rps), "ratio": round(rps / tps, 2) if tps else None,
                "tessera_p50_us": report["latency_us"]["p50"], "tessera_p99_us": report["latency_us"]["p99"],
                "errors": report["errors"], "outcomes": report["outcomes"],
                "cpu_cores_server_bench_postgres": share,
                # CPU per answered call, the figure that carries between machines;
                # the load generator's own beside them, so that its share of
                # the two cores is seen, not guessed.
                "cpu_us_per_call_server_postgres": [round(share[0] * 1e6 / rps) if rps else None,
                                                    round(share[2] * 1e6 / rps) if rps else None],
                "cpu_us_per_call_bench": round(share[1] * 1e6 / rps) if rps else None,
                "server_peak_rss_mib": round((report["server_peak_rss_kib"] or 0) / 1024, 1),
            })

        print(f"\ngrants table: {rows} rows, {table_bytes / 2**20:.0f} MiB with indexes, "
              f"{table_bytes / rows:.0f} bytes per grant; {args.clients} clients, {args.duration} s each\n")
        print(f"{'op':<17} {'in flight':>9} {'pgbench tps':>11} {'tessera rps':>11} {'ratio':>6} {'p50 us':>7} "
              f"{'p99 us':>7}  cores server/bench/pg  CPU us/call server/pg/bench (pgbench's pg/pgbench)")
        for r in results:
            s, b, p = r["cpu_cores_server_bench_postgres"]
            cs, cp = r["cpu_us_per_call_server_postgres"]
            print(f"{r['op']:<17} {r['clients']:>9} {r['pgbench_tps']:>11} {r['tessera_rps']:>11} {r['ratio']:>6} "
                  f"{r['tessera_p50_us']:>7} {r['tessera_p99_us']:>7}  {s}/{b}/{p:<14} {cs}/{cp}/{r['cpu_us_per_call_bench']} "
                  f"({r['pgbench_postgres_cpu_us_per_call']}/{r['pgbench_cpu_us_per_call']})"
                  + (f"  errors {r['errors']}" if r["errors"] else ""))
            print(f"{'':<17} outcomes: {r['outcomes']}")
        print(f"server peak RSS {max(r['server_peak_rss_mib'] for r in results)} MiB")
        if args.json:
            print(json.dumps({"rows": rows, "table_bytes": table_bytes, "results": results}))
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


if __name__ == "__main__":
    main()
