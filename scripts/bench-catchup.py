#!/usr/bin/env python3
"""How fast a Kai node that missed writes catches up, and what clients see *during* it;
prints a Markdown table.

    scripts/bench-catchup.py [--keys 200000] [--rate 5000] [--server-cpus 1] [--client-cpus 0]

Three nodes (N:R:W = 3:2:2, release build, RocksDB, one worker thread each, all on the server
CPUs; `down_after` 10 min so the restarted node is still a member and anti-entropy brings it up
to date). Steps:
 1. idle: clients offer RATE ops/s (open loop, 90/10 get/set, 16 connections) to nodes 1 and 2;
 2. kill -9 node 3; store KEYS keys through nodes 1 and 2 (pipelined);
 3. start the same client load again, with per-slot latency histograms (`kai bench --series`);
    restart node 3 and poll its `curr_items` until it holds every key;
 4. latency during the catch-up = the slots that lie entirely between the restart and the
    moment node 3 held every key, merged; catch-up rate = records node 3 gained / that time.
"""
import argparse, json, subprocess, sys, time
from benchlib import Kai, build, cpu_count, machine, stats, table, wait

SLOT = 0.2  # seconds per latency slot


def percentile(pairs, q):
    """The q-quantile of merged [value, count] pairs."""
    total = sum(c for _, c in pairs)
    if total == 0:
        return 0
    seen = 0
    for value, count in sorted(pairs):
        seen += count
        if seen >= q * total:
            return value
    return pairs[-1][0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--rate", type=int, default=5_000, help="offered client load during the measurements")
    ap.add_argument("--server-cpus", default="1")
    ap.add_argument("--client-cpus", default="0")
    args = ap.parse_args()
    kai = build()

    def load(targets, duration, extra=()):
        return subprocess.Popen(["taskset", "-c", args.client_cpus, kai, "bench", "--target", ",".join(targets),
                                 "--json", "--quiet", "--threads", str(cpu_count(args.client_cpus)),
                                 "--rate", str(args.rate), "--connections", "16", "--duration", duration,
                                 "--series", f"{SLOT}s", *extra], stdout=subprocess.PIPE, text=True)

    def result(proc):
        out, _ = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"kai bench failed: {out}")
        return json.loads(out.splitlines()[-1])

    with Kai(kai, args.server_cpus, 3, ["--set", "down_after=10m"]) as cluster:
        live = cluster.targets[:2]
        idle = result(load(live, "8s"))
        cluster.kill(2)
        t = time.time()
        subprocess.run(["taskset", "-c", args.client_cpus, kai, "bench", "--target", ",".join(live), "--quiet",
                        "--keys", str(args.keys), "--get-ratio", "0", "--connections", "4", "--duration", "1s",
                        "--warmup", "0s"], check=True, stdout=subprocess.DEVNULL)
        print(f"stored {args.keys} keys with node 3 down in {time.time() - t:.1f}s", file=sys.stderr)
        target = int(stats(live[0])["curr_items"])
        busy_proc = load(live, "30s", ["--no-prefill", "--keys", str(args.keys), "--warmup", "1s"])
        time.sleep(2)  # let the client load run before the restart
        restarted = time.time()
        cluster.start(2)
        cluster.settled(2)
        before = int(stats(cluster.targets[2])["curr_items"])
        wait("catch-up", lambda: int(stats(cluster.targets[2])["curr_items"]) >= target, timeout=600)
        caught_up = time.time()
        busy = result(busy_proc)

    took = caught_up - restarted
    start = busy["measure_start_unix"]
    inside = [s for s in busy["series"] if start + s["t"] >= restarted and start + s["t"] + SLOT <= caught_up]
    if caught_up > start + busy["duration_s"]:
        print("warning: the catch-up outlasted the client load; only its start is measured", file=sys.stderr)

    def figures(slots):
        pairs = [p for s in slots for p in s["histogram"]]
        secs = len(slots) * SLOT
        return (sum(s["ops"] for s in slots) / max(secs, 1e-9), percentile(pairs, 0.5), percentile(pairs, 0.99),
                percentile(pairs, 0.999), sum(s["errors"] for s in slots), secs)

    idle_f, busy_f = figures(idle["series"]), figures(inside)
    print(f"Machine: {machine()}; servers on CPUs {args.server_cpus}, client on CPUs {args.client_cpus}.")
    print(f"Node 3 restarted holding {before} of {target} keys and caught up {target - before} in {took:.1f} s "
          f"(from the restart, process start included) = {(target - before) / took:,.0f} records/s.\n")
    rows = [[name, f"{secs:.1f}", f"{ops:,.0f}", p50, p99, p999, errors]
            for name, (ops, p50, p99, p999, errors, secs) in (("idle", idle_f), ("during catch-up", busy_f))]
    table(["clients (open loop, %d ops/s offered)" % args.rate, "seconds measured", "ops/s", "p50 µs", "p99 µs",
           "p99.9 µs", "errors"], rows)
    print(f"\np99 during catch-up / idle = {busy_f[2] / max(idle_f[2], 1):.2f}")
    if not inside:
        sys.exit("the catch-up was shorter than one slot: nothing measured during it")


if __name__ == "__main__":
    main()
