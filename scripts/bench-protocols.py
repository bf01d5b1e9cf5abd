#!/usr/bin/env python3
"""Multi-key reads in the three memcache dialects, Kai (one node) versus memcached; prints a
Markdown table.

    scripts/bench-protocols.py [--rounds 3] [--duration 10s] [--multiget 1,16] [--connections 16]
                               [--keys 10000] [--value-size 100] [--get-ratio 1]
                               [--server-cpus 1] [--client-cpus 0]

For each keys-per-request K of --multiget, the same keys are read with
  text    one `get k1 … kK` line;
  meta    K quiet `mg <key> v k q` commands ended by `mn` (misses answer nothing);
  binary  K `getkq` packets ended by `noop`;
(K = 1 is a plain `get`, `mg <key> v`, binary `get`). Closed loop, one request in flight per
connection. Per system, fresh each time and alone while measured: start it, store every key
(pipelined), run every (K, protocol) pair (the protocol order rotates with the round), stop it.
Rounds alternate kai, memcached, kai, memcached, ...; the table gives the median and the spread
(min–max). "keys/s" counts keys read; "vs text" compares keys/s with the same system's text
protocol at the same K, "vs memcached" with memcached in the same protocol. A run with more than
0.1% errors, or (with --get-ratio 1) a read that did not find every stored key, fails the script.
"""
import argparse, sys
from benchlib import (Kai, Memcached, add_budget_args, bench, build, command_line, fmt_spread, machine,
                      median_spread, table)

PROTOCOLS = ["text", "meta", "binary"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--multiget", default="1,16", help="keys per request, comma separated")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--value-size", default="100")
    ap.add_argument("--get-ratio", type=float, default=1.0)
    ap.add_argument("--kai-args", default="", help="extra `kai start` arguments, e.g. '--set fsync=true'")
    add_budget_args(ap)
    args = ap.parse_args()
    kai = build()
    multigets = [int(k) for k in args.multiget.split(",")]
    workload = ["--connections", args.connections, "--keys", args.keys, "--value-size", args.value_size,
                "--get-ratio", args.get_ratio, "--duration", args.duration, "--warmup", args.warmup]
    systems = [lambda: Kai(kai, args.server_cpus, 1, args.kai_args.split()), lambda: Memcached(args.server_cpus)]
    results, failed = {}, []  # (system, protocol, K) -> [result]
    for r in range(args.rounds):
        protocols = PROTOCOLS[r % 3:] + PROTOCOLS[:r % 3]
        for make in systems:
            with make() as system:
                prefill = []
                for k in multigets:
                    for protocol in protocols:
                        res = bench(kai, args.client_cpus, system.targets, "--protocol", protocol, "--multiget", k,
                                    *workload, *prefill)
                        prefill = ["--no-prefill"]
                        results.setdefault((system.name, protocol, k), []).append(res)
                        what = f"{system.name} {protocol} K={k} round {r + 1}"
                        if res["failed"]:
                            failed.append(f"{what}: {res['failed']}")
                        if args.get_ratio == 1 and res["hits"] != res["keys_read_or_written"]:
                            failed.append(f"{what}: found {res['hits']} of {res['keys_read_or_written']} keys")
            print(f"round {r + 1}: {system.name} done", file=sys.stderr)

    print(f"Command: `{command_line()}`\n")
    print(f"Machine: {machine()}; servers on CPUs {args.server_cpus}, client on CPUs {args.client_cpus}; "
          f"{args.rounds} rounds alternating, {args.duration} each after {args.warmup} warm-up.")
    print(f"Load: closed loop, {args.connections} connections, {args.get_ratio:.0%} get, values {args.value_size} B, "
          f"{args.keys} uniform keys, all stored before measuring.\n")
    keys_per_sec = lambda name, protocol, k: median_spread([x["keys_per_sec"] for x in results[(name, protocol, k)]])[0]
    rows = []
    for k in multigets:
        for name in ("kai", "memcached"):
            for protocol in PROTOCOLS:
                rs = results[(name, protocol, k)]
                own = keys_per_sec(name, protocol, k)
                rows.append([name, protocol, k, fmt_spread([x["ops_per_sec"] for x in rs]),
                             fmt_spread([x["keys_per_sec"] for x in rs]),
                             fmt_spread([x["p50_us"] for x in rs]), fmt_spread([x["p99_us"] for x in rs]),
                             sum(x["errors"] for x in rs),
                             f"{own / max(keys_per_sec(name, 'text', k), 1e-9):.2f}",
                             f"{own / max(keys_per_sec('memcached', protocol, k), 1e-9):.2f}"])
    table(["system", "protocol", "keys per request", "requests/s median (min–max)", "keys/s", "p50 µs", "p99 µs",
           "errors", "keys/s vs text", "keys/s vs memcached"], rows)
    if failed:
        print("\nFAILED runs:\n" + "\n".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
