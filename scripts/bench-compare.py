#!/usr/bin/env python3
"""Kai versus memcached under the same load and CPU budget; prints a Markdown table.

    scripts/bench-compare.py single|cluster [--rounds 3] [--duration 10s] [--connections 16,64]
                             [--keys 10000] [--zipf 0.99] [--value-size 100] [--get-ratio 0.9]
                             [--rate N] [--server-cpus 1] [--client-cpus 0]

single : one Kai node (RocksDB, worker_threads = server CPUs) versus memcached -t <server CPUs>.
cluster: three Kai nodes, N:R:W = 3:2:2, one worker thread each, all on the server CPUs;
         client connections spread round-robin over the three.

Each measurement starts the system fresh (new data directories), stores every key, then runs a
closed loop at each connection count and an open loop at a fixed offered rate (by default half
of Kai's highest closed-loop throughput in the first round), then stops it: each system runs
alone while measured. Rounds alternate kai, memcached, kai, memcached, ...; the table gives the
median and the spread (min–max) over rounds. A run with more than 0.1% errors fails the script.
"""
import argparse, sys
from benchlib import (Kai, Memcached, add_budget_args, bench, build, fmt_spread, machine,
                      median_spread, table)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["single", "cluster"])
    ap.add_argument("--connections", default="16,64")
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--zipf", type=float)
    ap.add_argument("--value-size", default="100")
    ap.add_argument("--get-ratio", type=float, default=0.9)
    ap.add_argument("--rate", type=int, help="open-loop offered ops/s (default: half of Kai's maximum)")
    ap.add_argument("--kai-args", default="", help="extra `kai start` arguments, e.g. '--set fsync=true'")
    add_budget_args(ap)
    args = ap.parse_args()
    kai = build()
    conns = [int(c) for c in args.connections.split(",")]
    workload = ["--keys", args.keys, "--value-size", args.value_size, "--get-ratio", args.get_ratio,
                "--duration", args.duration, "--warmup", args.warmup]
    if args.zipf:
        workload += ["--zipf", args.zipf]
    nodes = 1 if args.mode == "single" else 3
    systems = [lambda: Kai(kai, args.server_cpus, nodes, args.kai_args.split()),
               lambda: Memcached(args.server_cpus)]
    results = {}  # (system name, load) -> [result]
    rate = args.rate
    failed = []
    for r in range(args.rounds):
        for make in systems:
            with make() as system:
                prefill = []
                for c in conns:
                    res = bench(kai, args.client_cpus, system.targets, "--connections", c, *workload, *prefill)
                    prefill = ["--no-prefill"]
                    results.setdefault((system.name, f"{c} conns"), []).append(res)
                    failed += [f"{system.name} {c} conns: {res['failed']}"] if res["failed"] else []
                if rate is None:  # first round, Kai first
                    rate = int(max(results[(system.name, f"{c} conns")][0]["ops_per_sec"] for c in conns) / 2)
                res = bench(kai, args.client_cpus, system.targets, "--connections", max(conns), "--rate", rate,
                            *workload, *prefill)
                results.setdefault((system.name, f"{rate}/s offered"), []).append(res)
                failed += [f"{system.name} open loop: {res['failed']}"] if res["failed"] else []
            print(f"round {r + 1}: {system.name} done", file=sys.stderr)

    print(f"Machine: {machine()}; servers on CPUs {args.server_cpus}, client on CPUs {args.client_cpus}; "
          f"{args.rounds} rounds alternating, {args.duration} each after {args.warmup} warm-up.")
    print(f"Load: {args.get_ratio:.0%} get, values {args.value_size} B, {args.keys} keys "
          f"{'zipf ' + str(args.zipf) if args.zipf else 'uniform'}.\n")
    loads = [f"{c} conns" for c in conns] + [f"{rate}/s offered"]
    rows = []
    for load in loads:
        mc = results[("memcached", load)]
        for name in (Kai(kai, args.server_cpus, nodes).name, "memcached"):
            rs = results[(name, load)]
            ratio = median_spread([x["ops_per_sec"] for x in rs])[0] / median_spread([x["ops_per_sec"] for x in mc])[0]
            p99_ratio = median_spread([x["p99_us"] for x in rs])[0] / max(median_spread([x["p99_us"] for x in mc])[0], 1)
            rows.append([name, load, fmt_spread([x["ops_per_sec"] for x in rs]),
                         fmt_spread([x["p50_us"] for x in rs]), fmt_spread([x["p99_us"] for x in rs]),
                         fmt_spread([x["p999_us"] for x in rs]), sum(x["errors"] for x in rs),
                         f"{ratio:.2f}", f"{p99_ratio:.2f}"])
    table(["system", "load", "ops/s median (min–max)", "p50 µs", "p99 µs", "p99.9 µs", "errors",
           "ops/s vs memcached", "p99 vs memcached"], rows)
    if failed:
        print("\nFAILED runs:\n" + "\n".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
