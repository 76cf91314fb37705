#!/usr/bin/env python3
"""A server's resident memory before, during and after a flood of connections.

    python3 bench/conn_flood.py --pid PID --addr 127.0.0.1:50051 --mode headers
    python3 bench/conn_flood.py --pid PID --addr 127.0.0.1:50051 --mode silent

`headers`: N connections each send one HTTP/1.1 request head with a
342 KB header and no body, and stay open. `silent`: N connections send
nothing. RSS (VmRSS of /proc/PID/status) is read before, while the
connections are open (after --hold seconds), and --after seconds after they
are closed. While they are open, another client's GET /healthz on a new
connection is timed (30 s at most). The client needs an open-files limit above N.
"""

import argparse
import socket
import time


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def open_fds(pid):
    import os

    return len(os.listdir(f"/proc/{pid}/fd"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("--mode", choices=["headers", "silent"], required=True)
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--header-kb", type=int, default=342)
    parser.add_argument("--hold", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=5.0)
    args = parser.parse_args()
    count = args.count or (1000 if args.mode == "headers" else 1100)
    host, port = args.addr.rsplit(":", 1)
    head = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: "
        + b"a" * (args.header_kb * 1000)
        + b"\r\n\r\n"
    )

    print(f"before: rss {rss_mb(args.pid):.1f} MB, fds {open_fds(args.pid)}")
    socks, refused = [], 0
    start = time.monotonic()
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(10)
        try:
            sock.connect((host, int(port)))
            if args.mode == "headers":
                sock.setblocking(False)
                try:
                    sock.send(head)
                except (BlockingIOError, OSError):
                    pass
        except OSError:
            refused += 1
        socks.append(sock)
    print(f"opened {count} connections ({refused} failed) in {time.monotonic() - start:.1f} s")
    probe_start = time.monotonic()
    try:
        probe = socket.create_connection((host, int(port)), timeout=30)
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status = probe.recv(64).split(b"\r\n")[0].decode() or "closed"
        probe.close()
    except OSError as err:
        status = f"failed: {err}"
    print(f"probe GET /healthz on a new connection: {status} after {time.monotonic() - probe_start:.1f} s")
    peak = 0.0
    deadline = time.monotonic() + args.hold
    while time.monotonic() < deadline:
        peak = max(peak, rss_mb(args.pid))
        time.sleep(0.1)
    closed = 0
    for sock in socks:
        try:
            sock.setblocking(False)
            sock.recv(1, socket.MSG_PEEK)
            closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    print(
        f"during: rss {rss_mb(args.pid):.1f} MB (peak {peak:.1f} MB), "
        f"fds {open_fds(args.pid)}, {closed} of {count} closed or answered by the server"
    )
    for sock in socks:
        sock.close()
    time.sleep(args.after)
    print(f"after: rss {rss_mb(args.pid):.1f} MB, fds {open_fds(args.pid)}")


if __name__ == "__main__":
    main()
