#!/usr/bin/env python3
"""Read-modify-write commands (issue 10) through a 3-node 3:2:2 Kai cluster and memcached;
prints a Markdown table.

    scripts/bench-mix.py [--rounds 3] [--duration 10s] [--connections 32] [--hot-connections 64]
                         [--keys 10000] [--server-cpus 1] [--client-cpus 0]

Per system, fresh each time and alone while measured, closed loop:
  set       sets of random prefilled keys (the baseline for incr);
  incr      uncontended incr of random prefilled counters;
  add       add of fresh keys (every add stores);
  cas       gets + cas of random prefilled keys (one operation; EXISTS is a refusal, not an error);
  hot-incr  every connection increments one key; the run fails if an acknowledged increment is
            lost (the counter is read back and compared).
Rounds alternate kai, memcached, ...; medians with the spread (min–max).
"""
import argparse, sys
from benchlib import Kai, Memcached, add_budget_args, bench, build, fmt_spread, machine, median_spread, table

MIXES = [("set", ["--mix", "get-set", "--get-ratio", "0"]), ("incr", ["--mix", "incr"]),
         ("add", ["--mix", "add"]), ("cas", ["--mix", "cas"]), ("hot-incr", ["--mix", "hot-incr"])]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--hot-connections", type=int, default=64)
    ap.add_argument("--keys", type=int, default=10_000)
    add_budget_args(ap)
    args = ap.parse_args()
    kai = build()
    results, failed = {}, []
    systems = [lambda: Kai(kai, args.server_cpus, 3), lambda: Memcached(args.server_cpus)]
    for r in range(args.rounds):
        for make in systems:
            for mix, flags in MIXES:
                conns = args.hot_connections if mix == "hot-incr" else args.connections
                with make() as system:
                    res = bench(kai, args.client_cpus, system.targets, "--connections", conns, "--keys", args.keys,
                                "--duration", args.duration, "--warmup", args.warmup, *flags)
                results.setdefault((system.name, mix), []).append(res)
                if res["failed"]:
                    failed.append(f"{system.name} {mix}: {res['failed']}")
            print(f"round {r + 1}: {system.name} done", file=sys.stderr)

    print(f"Machine: {machine()}; servers on CPUs {args.server_cpus}, client on CPUs {args.client_cpus}; "
          f"{args.rounds} rounds alternating, {args.duration} each after {args.warmup} warm-up; "
          f"{args.connections} connections ({args.hot_connections} for hot-incr), {args.keys} keys, 100 B values.\n")
    rows = []
    for name in ("kai-3node", "memcached"):
        set_median = median_spread([x["ops_per_sec"] for x in results[(name, "set")]])[0]
        for mix, _ in MIXES:
            rs = results[(name, mix)]
            ops = [x["ops_per_sec"] for x in rs]
            lost = ", ".join(str(x["lost_increments"]) for x in rs) if mix == "hot-incr" else ""
            rows.append([name, mix, fmt_spread(ops), f"{median_spread(ops)[0] / set_median:.2f}",
                         fmt_spread([x["p50_us"] for x in rs]), fmt_spread([x["p99_us"] for x in rs]),
                         sum(x["refused"] for x in rs), sum(x["errors"] for x in rs), lost])
    table(["system", "mix", "ops/s median (min–max)", "vs own set", "p50 µs", "p99 µs", "refused", "errors",
           "lost increments per round"], rows)
    if failed:
        print("\nFAILED runs:\n" + "\n".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
