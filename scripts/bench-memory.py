#!/usr/bin/env python3
"""Resident memory of one Kai node and of memcached: per million keys stored and per 1,000 idle
connections; prints a Markdown table.

    scripts/bench-memory.py [--rounds 1] [--keys 1000000] [--value-size 100]
                            [--connections 1000] [--server-cpus 1] [--client-cpus 0]

Per system, fresh each time (empty data directory): start it and read its RSS (VmRSS of
/proc/<pid>/status, once it is steady: two readings 1 s apart within 1%); store --keys keys with
--value-size byte values (`kai bench` prefill, pipelined, text protocol) and read it again; open
--connections connections that each send one `version` and then stay open, idle, and read it
again. Per million keys = (after loading - at start) / keys × 10^6; per 1,000 connections =
(with connections - after loading) / connections × 1000. Kai runs with its default
configuration (RocksDB, worker_threads = server CPUs) but max_connections raised to fit the
connections; memcached with `-t <server CPUs> -m 4096 -c <enough>`. Rounds alternate kai,
memcached, ...; the table gives the median and the spread (min–max).
"""
import argparse, resource, socket, sys, time
from benchlib import Kai, Memcached, bench, build, command_line, fmt_spread, machine, table

# How long RSS may take to settle after a phase.
SETTLE_TIMEOUT = 60
# RSS is steady when two readings this far apart differ by at most STEADY_SHARE.
STEADY_INTERVAL = 1.0
STEADY_SHARE = 0.01
# Connections on top of --connections that each server must accept (bench, stats probes).
SPARE_CONNECTIONS = 64


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    sys.exit(f"no VmRSS for pid {pid}")


def steady_rss_kib(pid):
    """VmRSS once two readings STEADY_INTERVAL apart agree within STEADY_SHARE."""
    deadline = time.time() + SETTLE_TIMEOUT
    last = rss_kib(pid)
    while True:
        time.sleep(STEADY_INTERVAL)
        now = rss_kib(pid)
        if abs(now - last) <= STEADY_SHARE * max(last, 1) or time.time() > deadline:
            return now
        last = now


def open_idle(addr, count):
    """`count` connections to addr, each having had one `version` answered."""
    host, port = addr.split(":")
    conns = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(b"version\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(256)
            if not chunk:
                sys.exit(f"{addr} closed connection {len(conns) + 1} of {count}")
            reply += chunk
        if not reply.startswith(b"VERSION "):
            sys.exit(f"{addr} answered `version` with {reply!r}")
        conns.append(s)
    return conns


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--server-cpus", default="1", help="CPUs for the server (taskset list)")
    ap.add_argument("--client-cpus", default="0", help="CPUs for the loader (taskset list)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.connections + SPARE_CONNECTIONS:
        sys.exit(f"the open file limit ({hard}) is below {args.connections} connections; raise `ulimit -Hn`")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    kai = build()
    most = max(1024, args.connections + SPARE_CONNECTIONS)
    systems = [lambda: Kai(kai, args.server_cpus, 1, ["--set", f"max_connections={most}"]),
               lambda: Memcached(args.server_cpus, ["-c", str(most)])]
    results = {}  # system -> [(start, loaded, connected) KiB]
    for r in range(args.rounds):
        for make in systems:
            with make() as system:
                pid = system.pids()[0]
                start = steady_rss_kib(pid)
                res = bench(kai, args.client_cpus, system.targets, "--keys", args.keys,
                            "--value-size", args.value_size, "--connections", 1,
                            "--duration", "0s", "--warmup", "0s")
                if res["failed"]:
                    sys.exit(f"{system.name}: loading failed: {res['failed']}")
                loaded = steady_rss_kib(pid)
                conns = open_idle(system.targets[0], args.connections)
                connected = steady_rss_kib(pid)
                for c in conns:
                    c.close()
            results.setdefault(system.name, []).append((start, loaded, connected))
            print(f"round {r + 1}: {system.name} done", file=sys.stderr)

    print(f"Command: `{command_line()}`\n")
    print(f"Machine: {machine()}; server on CPUs {args.server_cpus}, loader on CPUs {args.client_cpus}; "
          f"{args.rounds} round(s) alternating.")
    print(f"Load: {args.keys} keys of {args.value_size} B values ({args.keys * args.value_size / 2**20:.0f} MiB "
          f"of values), then {args.connections} idle connections.\n")
    mib = lambda kib: kib / 1024
    rows = []
    for name in ("kai", "memcached"):
        rs = results[name]
        rows.append([name, fmt_spread([mib(s) for s, _, _ in rs], 1), fmt_spread([mib(l) for _, l, _ in rs], 1),
                     fmt_spread([mib(c) for _, _, c in rs], 1),
                     fmt_spread([mib(l - s) / args.keys * 1e6 for s, l, _ in rs], 1),
                     fmt_spread([(c - l) / args.connections * 1000 / 1024 for _, l, c in rs], 2)])
    table(["system", "RSS at start MiB", f"after {args.keys} keys MiB", f"with {args.connections} connections MiB",
           "MiB per million keys", "MiB per 1,000 connections"], rows)


if __name__ == "__main__":
    main()
