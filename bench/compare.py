#!/usr/bin/env python3
"""Tessera next to PostgreSQL's own limit, in one run on one machine.

For each hot operation (validate, claim, mint) this runs pgbench with the
exact statements Tessera executes for it (printed by `tessera bench
--print-sql`), on the same grants table with the same number of rows and the
same client count, then Tessera itself through `tessera bench`, and prints
each pair and the ratio Tessera/pgbench.

It creates a scratch database, starts one Tessera server on a free port,
and removes both when it ends, whatever happens.

    python3 bench/compare.py                       # 1M rows, 64 clients, 10 s each
    python3 bench/compare.py --rows 100000 --duration 5
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

# pgbench expressions for each statement parameter. Hot rows (the ones
# pgbench reads and claims) have grant_id 'hot<i>' and token_hash
# sha256('hot<i>'); minted rows get a random id.
PARAMS = {
    "find": {1: "sha256(('hot' || :i)::bytea)"},
    "consume": {1: "'hot' || :i"},
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
    },
}


def kind(statement):
    if statement.startswith("SELECT"):
        return "find"
    if statement.startswith("UPDATE"):
        return "consume"
    if statement.startswith("INSERT"):
        return "insert"
    raise ValueError(statement)


def pgbench_script(statements, hot):
    lines = [f"\\set i random(1, {hot})", "\\set n random(1, 1000000000000)"]
    for statement in statements:
        params = PARAMS[kind(statement)]
        # $12 before $1, so that "$1" never eats the start of "$12".
        for number in sorted(params, reverse=True):
            statement = statement.replace(f"${number}", params[number])
        if re.search(r"\$\d", statement):
            raise ValueError(f"unmapped parameter in {statement}")
        lines.append(statement + ";")
    return "\n".join(lines) + "\n"


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
        done = subprocess.run(
            ["pgbench", "-n", "-M", "prepared", "-f", f.name, "-c", str(clients), "-j", "2",
             "-T", str(duration), url],
            capture_output=True, text=True,
        )
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{done.stderr[-2000:]}")
    out = done.stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    return tps, latency


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
                        help="a PostgreSQL where a scratch database may be created")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the grants table")
    parser.add_argument("--hot", type=int, default=10_000, help="rows the load touches (Tessera pre-mints as many)")
    parser.add_argument("--clients", type=int, default=64, help="pgbench clients = Tessera calls in flight")
    parser.add_argument("--connections", type=int, default=4, help="Tessera bench HTTP/2 connections")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--ops", default="validate,validate-bounded,claim,mint",
                        help="validate-bounded: BOUNDED Validate, next to pgbench's validate")
    parser.add_argument("--server-args", default="", help="extra flags for the Tessera server")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    statements = json.loads(subprocess.run([TESSERA, "bench", "--print-sql"], check=True,
                                           capture_output=True, text=True).stdout)
    scratch = f"tessera_compare_{os.getpid()}"
    url = with_database(args.database_url, scratch)
    psql(args.database_url, f"CREATE DATABASE {scratch}")
    server = None
    try:
        subprocess.run([TESSERA, "migrate", "--database-url", url], check=True, capture_output=True)
        filler = max(args.rows - args.hot, 0)
        print(f"filling grants: {args.hot} hot rows for pgbench + {filler} others", file=sys.stderr)
        psql(url, f"""
            INSERT INTO grants (grant_id, token_hash, token_hint, subject, audience, run_id, scopes,
                                labels, sealed_payload, max_uses, issued_by, issued_at, expires_at)
            SELECT 'hot' || i, sha256(('hot' || i)::bytea), 'tsr_abcd', 'bench-subject-' || (i % 100),
                   '{{}}', 'bench-run-' || (i % 1000), '{{bench:*,tool:search}}', '{{}}', '\\x', 0, 'dev',
                   tessera_now_us(), tessera_now_us() + 86400000000
            FROM generate_series(1, {args.hot}) i;
            INSERT INTO grants (grant_id, token_hash, token_hint, subject, audience, run_id, scopes,
                                labels, sealed_payload, max_uses, issued_by, issued_at, expires_at)
            SELECT 'fill' || i, sha256(('fill' || i)::bytea), 'tsr_abcd', 'bench-subject-' || (i % 100),
                   '{{}}', 'bench-run-' || (i % 1000), '{{bench:*,tool:search}}', '{{}}', '\\x', 0, 'dev',
                   tessera_now_us(), tessera_now_us() + 86400000000
            FROM generate_series(1, {filler}) i;""")
        psql(url, "VACUUM ANALYZE grants")
        table_bytes = int(psql_value(url, "SELECT pg_total_relation_size('grants')"))
        rows = int(psql_value(url, "SELECT count(*) FROM grants"))

        port = free_port()
        server = subprocess.Popen(
            [TESSERA, "serve", "--listen", f"127.0.0.1:{port}", "--database-url", url, "--no-migrate",
             *args.server_args.split()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            if subprocess.run([TESSERA, "health", "--addr", f"127.0.0.1:{port}"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the Tessera server did not become SERVING")

        results = []
        for op in args.ops.split(","):
            bounded = op == "validate-bounded"
            script = pgbench_script(statements["validate" if bounded else op], args.hot)
            tps, pg_latency = run_pgbench(url, script, args.clients, args.duration)

            bench = subprocess.Popen(
                [TESSERA, "bench", "--target", f"127.0.0.1:{port}", "--op", "validate" if bounded else op,
                 "--consistency", "bounded" if bounded else "full",
                 "--concurrency", str(args.clients), "--connections", str(args.connections),
                 "--duration", f"{args.duration}s", "--grants", str(args.hot),
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
            report = json.loads(bench.communicate()[0])
            start, end = report["window_unix_ms"][0] / 1000, report["window_unix_ms"][1] / 1000
            inside = [s for s in samples if start <= s[0] <= end]
            first, last = inside[0], inside[-1]
            share = [round((last[k] - first[k]) / (last[0] - first[0]), 2) for k in (1, 2, 3)]
            results.append({
                "op": op, "pgbench_tps": round(tps), "pgbench_latency_ms": pg_latency,
                "tessera_rps": round(report["rps"]), "ratio": round(report["rps"] / tps, 2),
                "tessera_p50_us": report["latency_us"]["p50"], "tessera_p99_us": report["latency_us"]["p99"],
                "errors": report["errors"], "outcomes": report["outcomes"],
                "cpu_cores_server_bench_postgres": share,
                "server_peak_rss_mib": round((report["server_peak_rss_kib"] or 0) / 1024, 1),
            })

        print(f"\ngrants table: {rows} rows, {table_bytes / 2**20:.0f} MiB with indexes, "
              f"{table_bytes / rows:.0f} bytes per grant; {args.clients} clients, {args.duration} s each\n")
        print(f"{'op':<16} {'pgbench tps':>11} {'tessera rps':>11} {'ratio':>6} {'p50 us':>7} {'p99 us':>7}  "
              f"CPU cores used: server/bench/postgres")
        for r in results:
            s, b, p = r["cpu_cores_server_bench_postgres"]
            print(f"{r['op']:<16} {r['pgbench_tps']:>11} {r['tessera_rps']:>11} {r['ratio']:>6} "
                  f"{r['tessera_p50_us']:>7} {r['tessera_p99_us']:>7}  {s}/{b}/{p}"
                  + (f"  errors {r['errors']}" if r["errors"] else ""))
        print(f"server peak RSS {max(r['server_peak_rss_mib'] for r in results)} MiB")
        if args.json:
            print(json.dumps({"rows": rows, "table_bytes": table_bytes, "results": results}))
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        psql(args.database_url, f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")


if __name__ == "__main__":
    main()
