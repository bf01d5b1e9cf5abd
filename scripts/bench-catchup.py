#!/usr/bin/env python3
"""Measures how fast a Kai node that missed writes catches up, and what it costs clients.

    scripts/bench-catchup.py [--keys 200000] [--rate 5000]

Starts a 3-node cluster (N:R:W = 3:2:2, release build, RocksDB), measures client latency at a
fixed offered load, kills one node (-9), writes KEYS keys through the other two, restarts it and
measures (1) how long until its replica holds every key (anti-entropy catch-up, records/s) and
(2) client latency at the same offered load while it catches up.
"""
import argparse, json, os, shutil, signal, socket, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stats(addr, group=""):
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"stats {group}\r\n".encode())
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    out = {}
    for line in data.decode().splitlines():
        parts = line.split(" ", 2)
        if parts[0] == "STAT" and len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


def wait(what, cond, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--rate", type=int, default=5_000, help="offered client load during the measurements")
    args = ap.parse_args()
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/kai-target"))
    if shutil.which("ccache") and "CC" not in env:
        env.update(CCACHE_DIR=env.get("CCACHE_DIR", os.path.expanduser("~/.cache/ccache")), CC="ccache gcc", CXX="ccache g++")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "kai-node"], cwd=ROOT, env=env, check=True)
    kai = os.path.join(env["CARGO_TARGET_DIR"], "release", "kai")
    work = tempfile.mkdtemp()
    peers = [free_port() for _ in range(3)]
    clients = [free_port() for _ in range(3)]
    seeds = ",".join(f"127.0.0.1:{p}" for p in peers)
    procs = [None] * 3

    def start(i):
        cmd = [kai, "start", "--data-dir", f"{work}/n{i}", "--listen", f"127.0.0.1:{clients[i]}",
               "--peer-listen", f"127.0.0.1:{peers[i]}", "--set", f"seeds={seeds}",
               "--set", "n=3", "--set", "r=2", "--set", "w=2", "--set", "worker_threads=1",
               "--set", "down_after=10m", "--set", "admin_listen=127.0.0.1:0"]
        log = open(f"{work}/n{i}.log", "a")
        procs[i] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)

    def settled(i):
        wait(f"node {i}", lambda: stats(f"127.0.0.1:{clients[i]}").get("kai_rings_active") == "1")

    def bench(targets, duration, extra=()):
        out = subprocess.run([kai, "bench", "--target", ",".join(targets), "--duration", duration,
                              "--json", "--quiet", *extra], check=True, capture_output=True, text=True).stdout
        return json.loads(out)

    try:
        for i in range(3):
            start(i)
        for i in range(3):
            settled(i)
        addr = [f"127.0.0.1:{p}" for p in clients]
        live = addr[:2]
        idle = bench(live, "8s", ["--rate", str(args.rate), "--connections", "16"])
        procs[2].send_signal(signal.SIGKILL)
        procs[2].wait()
        t = time.time()
        bench(live, "1s", ["--keys", str(args.keys), "--get-ratio", "0", "--connections", "4", "--warmup", "0s"])
        print(f"wrote {args.keys} keys with node 3 down in {time.time() - t:.1f}s")
        target = int(stats(addr[0])["curr_items"])
        result = {}

        def load_during_catchup():
            result["busy"] = bench(live, "8s", ["--rate", str(args.rate), "--connections", "16", "--no-prefill",
                                                "--keys", str(args.keys)])

        started = time.time()
        start(2)
        settled(2)
        before = int(stats(addr[2])["curr_items"])
        loader = threading.Thread(target=load_during_catchup)
        loader.start()
        wait("catch-up", lambda: int(stats(addr[2])["curr_items"]) >= target, timeout=600)
        took = time.time() - started
        loader.join()
        caught = target - before
        print(f"node 3 restarted holding {before} of {target} keys; caught up {caught} in {took:.1f}s "
              f"= {caught / took:,.0f} keys/s (includes restart)")
        busy = result["busy"]
        for name, r in (("idle", idle), ("during catch-up", busy)):
            print(f"clients {name:<16} {r['ops_per_sec']:>8.0f} ops/s  p50 {r['p50_us']}us  p99 {r['p99_us']}us  "
                  f"p99.9 {r['p999_us']}us")
        print(f"p99 during catch-up / idle = {busy['p99_us'] / max(idle['p99_us'], 1):.2f}")
    finally:
        for p in procs:
            if p and p.poll() is None:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
