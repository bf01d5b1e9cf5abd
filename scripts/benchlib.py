"""Shared by the benchmark scripts: build, start and stop Kai and memcached pinned to CPUs,
run `kai bench`, take medians over alternating rounds, print tables.

CPU budget: servers run on --server-cpus, the load generator on --client-cpus (taskset), so a
server never gets more CPU than the budget, whatever its thread count; memcached gets `-t` =
number of server CPUs, a lone Kai node `worker_threads` = the same, and each of three colocated
Kai nodes one worker thread (its store and RocksDB threads share the same CPUs).
"""
import getpass, json, os, shlex, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_budget_args(ap):
    ap.add_argument("--server-cpus", default="1", help="CPUs for the server(s) under test (taskset list)")
    ap.add_argument("--client-cpus", default="0", help="CPUs for the load generator (taskset list)")
    ap.add_argument("--rounds", type=int, default=3, help="measurements per system, alternating")
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--warmup", default="2s")


def cpu_count(cpus):
    n = 0
    for part in cpus.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def build():
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/kai-target"))
    if shutil.which("ccache") and "CC" not in env:
        env.update(CCACHE_DIR=env.get("CCACHE_DIR", os.path.expanduser("~/.cache/ccache")),
                   CC="ccache gcc", CXX="ccache g++")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "kai-node"], cwd=ROOT, env=env, check=True)
    return os.path.join(env["CARGO_TARGET_DIR"], "release", "kai")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait(what, cond, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


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


class Memcached:
    """memcached -t <server CPUs> pinned to the server CPUs."""
    name = "memcached"

    def __init__(self, cpus, extra=()):
        self.cpus, self.extra = cpus, list(extra)

    def __enter__(self):
        port = free_port()
        self.proc = subprocess.Popen(["taskset", "-c", self.cpus, "memcached", "-t", str(cpu_count(self.cpus)),
                                      "-p", str(port), "-U", "0", "-l", "127.0.0.1", "-m", "4096",
                                      "-u", getpass.getuser(), *self.extra])
        self.targets = [f"127.0.0.1:{port}"]
        wait("memcached", lambda: stats(self.targets[0]) is not None)
        return self

    def pids(self):
        return [self.proc.pid]

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()


class Kai:
    """`nodes` Kai processes (N:R:W = 3:2:2 when 3) pinned to the server CPUs, fresh data dirs."""

    def __init__(self, kai, cpus, nodes=1, extra=()):
        self.kai, self.cpus, self.nodes, self.extra = kai, cpus, nodes, list(extra)
        self.name = "kai" if nodes == 1 else f"kai-{nodes}node"
        self.procs = [None] * nodes

    def command(self, i):
        cmd = ["taskset", "-c", self.cpus, self.kai, "start", "--data-dir", f"{self.work}/n{i}",
               "--listen", f"127.0.0.1:{self.clients[i]}", "--peer-listen", f"127.0.0.1:{self.peers[i]}",
               "--set", "admin_listen=127.0.0.1:0"]
        if self.nodes == 1:
            cmd += ["--set", f"worker_threads={cpu_count(self.cpus)}"]
        else:
            seeds = ",".join(f"127.0.0.1:{p}" for p in self.peers)
            cmd += ["--set", f"seeds={seeds}", "--set", "n=3", "--set", "r=2", "--set", "w=2",
                    "--set", "worker_threads=1"]
        return cmd + self.extra

    def start(self, i):
        log = open(f"{self.work}/n{i}.log", "a")
        self.procs[i] = subprocess.Popen(self.command(i), stdout=subprocess.DEVNULL, stderr=log)

    def settled(self, i):
        if self.nodes > 1:
            wait(f"node {i}", lambda: stats(self.targets[i]).get("kai_rings_active") == "1")
        else:
            wait(f"node {i}", lambda: stats(self.targets[i]) is not None)

    def __enter__(self):
        self.work = tempfile.mkdtemp(prefix="kai-bench-")
        self.peers = [free_port() for _ in range(self.nodes)]
        self.clients = [free_port() for _ in range(self.nodes)]
        self.targets = [f"127.0.0.1:{p}" for p in self.clients]
        for i in range(self.nodes):
            self.start(i)
        for i in range(self.nodes):
            self.settled(i)
        return self

    def pids(self):
        """Process ids of the nodes (taskset execs the server, so they are the servers')."""
        return [p.pid for p in self.procs]

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def __exit__(self, *exc):
        for p in self.procs:
            if p and p.poll() is None:
                p.terminate()
        for p in self.procs:
            if p:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def bench(kai, client_cpus, targets, *args):
    """Runs `kai bench --json` pinned to the client CPUs; returns its result (with "failed" set
    if it exited non-zero: too many errors, lost increments)."""
    cmd = ["taskset", "-c", client_cpus, kai, "bench", "--target", ",".join(targets), "--json", "--quiet",
           "--threads", str(cpu_count(client_cpus)), *map(str, args)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in run.stdout.splitlines() if l.startswith("{")]
    if not lines:
        sys.exit(f"kai bench produced no result: {' '.join(cmd)}\n{run.stderr}")
    result = json.loads(lines[-1])
    result["failed"] = run.returncode != 0 and run.stderr.strip().splitlines()[-1:]
    return result


def command_line():
    """The command this script was run with, quoted for a shell (for the table header)."""
    return " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def median_spread(values):
    """'median (min–max)' of numbers."""
    return statistics.median(values), min(values), max(values)


def fmt_spread(values, digits=0):
    med, lo, hi = median_spread(values)
    f = f"{{:,.{digits}f}}"
    return f"{f.format(med)} ({f.format(lo)}–{f.format(hi)})"


def table(header, rows):
    """Prints a Markdown table."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    sys.stdout.flush()


def machine():
    """One line describing the machine and the CPU split, for the docs."""
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} CPUs ({model}), load average {load:.2f} at start"
