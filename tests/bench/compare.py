#!/usr/bin/env python3
"""Side-by-side benchmark: sse-hub against nginx + Nchan, same scenarios, same machine.

Builds the release binaries, installs Debian's libnginx-mod-nchan when missing, restarts each
server before each scenario, drives both with the project's `loadgen`, and prints a Markdown
table with the ratios (hub / Nchan). All traffic stays on 127.0.0.1; every run is bounded.

    python3 tests/bench/compare.py              # every scenario
    python3 tests/bench/compare.py --quick      # smaller counts, for a smoke run
    python3 tests/bench/compare.py --durability # the hub alone: durable history vs memory only
    python3 tests/bench/compare.py --cpu-modes  # user vs kernel CPU per delivery, both servers
    python3 tests/bench/compare.py --ratio-rounds --rounds 5  # fixed rates, hub and Nchan in turn
    python3 tests/bench/compare.py --memory-history ...  # the hub with its history in memory, as Nchan
    python3 tests/bench/compare.py --hub-only --old-hub OLD/target/release/sse-hub
                                                # storm and template scenarios, old vs new
    python3 tests/bench/compare.py --resume-storm [--runs 2] [--old-hub PATH]
                                                # 10,000 resume with Last-Event-ID within 1 s
    python3 tests/bench/compare.py --scaleout-50k [--runs 2]
                                                # 50,000 subscribers on 3 nodes over Redis
    python3 tests/bench/compare.py --bin-dir DIR ...  # use sse-hub and loadgen built in DIR (no build)
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HUB = REPO / "target" / "release" / "sse-hub"
LOADGEN = REPO / "target" / "release" / "loadgen"
KEY = "bench-key-bench-key-bench-key-0123456789"
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
NGINX = next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), "nginx")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def use_bin_dir(path):
    """Runs the `sse-hub` and `loadgen` already built in `path` instead of this checkout's."""
    global HUB, LOADGEN
    HUB, LOADGEN = Path(path).resolve() / "sse-hub", Path(path).resolve() / "loadgen"
    for b in (HUB, LOADGEN):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"no executable {b}")


def setup(nchan=True, build=True):
    if build:
        subprocess.run(["cargo", "build", "--release", "-p", "sse-hub", "-p", "loadgen"],
                       cwd=REPO, check=True)
    if nchan and not os.path.exists(NCHAN_MODULE) or shutil.which("nginx") is None and not os.path.exists(NGINX):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx", "libnginx-mod-nchan"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


# The hub's history flags in the comparison: () is its default, durable history.
STORE = ()


class Hub:
    name = "sse-hub"

    def __init__(self, transport="local", binary=None, args=(), store=None):
        """`store`: flags for the history (`("--data-dir", "none")` for memory only; by default
        `STORE`: the hub's own, durable, unless `--memory-history`); the durable history goes to a fresh temporary directory, gone
        after the run. A binary other than this checkout's (`--old-hub`) gets no `--data-dir`:
        it may predate it."""
        self.transport = transport
        self.binary = binary = binary or HUB
        self.args = [str(a) for a in args]
        self.store = list(STORE if store is None else store)
        self.durable = binary == HUB and "--data-dir" not in self.store

    def __enter__(self):
        self.port = free_port()
        self.data = tempfile.TemporaryDirectory(prefix="sse-hub-bench-")
        self.proc = subprocess.Popen(
            [str(self.binary), "--bind", f"127.0.0.1:{self.port}", "--jwt-key", KEY, "--allow-anonymous",
             "--transport", self.transport, *self.store,
             *(["--data-dir", self.data.name] if self.durable else []),
             "--tick-interval", "0", "--max-subscribers", "30000", "--max-subscribers-per-ip", "30000",
             "--publish-rate", "1000000", "--publish-burst", "1000000", "--history-size", "10000",
             "--workers", "2",
             # Thousands of subscribers from 16 addresses: no attempt rate (a binary before it
             # has no such flag).
             *(["--subscribe-rate", "0"] if self.binary == HUB else []), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        wait_port(self.port)
        self.token = subprocess.run([str(HUB), "--jwt-key", KEY, "token", "--legacy", "--publish", "*"],
                                    capture_output=True, text=True, check=True).stdout.strip()
        return self

    def pids(self):
        return [self.proc.pid]

    def urls(self, topic):
        base = f"http://127.0.0.1:{self.port}/.well-known/mercure"
        return f"{base}?topic=%2F{topic}", base, ["--pub-mode", "mercure", "--token", self.token,
                                                   "--topic", f"/{topic}"]

    def sub_url(self, selector):
        """Subscribe URL for one percent-encoded topic selector, or for a whole query when it
        names its parameter (`match_urlpattern=…`; hub only)."""
        query = selector if "=" in selector else f"topic={selector}"
        return f"http://127.0.0.1:{self.port}/.well-known/mercure?{query}"

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.data.cleanup()

    def disk_bytes(self):
        """Bytes of the durable history's files."""
        return sum(f.stat().st_size for f in Path(self.data.name).rglob("*") if f.is_file())


NCHAN_CONF = """
load_module {module};
worker_processes 2;
worker_rlimit_nofile 65536;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 40000; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    nchan_shared_memory_size 256M;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location ~ ^/pub/(\\w+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_message_buffer_length 10000;
            nchan_message_timeout 1h;
        }}
        location ~ ^/sub/(\\w+)$ {{
            nchan_subscriber;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
        }}
    }}
}}
"""


class Nchan:
    name = "nginx+Nchan"

    def __enter__(self):
        self.port = free_port()
        self.prefix = tempfile.mkdtemp(prefix="nchan-bench-")
        conf = Path(self.prefix) / "nginx.conf"
        conf.write_text(NCHAN_CONF.format(module=NCHAN_MODULE, prefix=self.prefix, port=self.port))
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix, "-c", str(conf), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_port(self.port)
        return self

    def pids(self):
        out = subprocess.run(["pgrep", "-s", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()] or [self.proc.pid]

    def urls(self, topic):
        base = f"http://127.0.0.1:{self.port}"
        return f"{base}/sub/{topic}", f"{base}/pub/{topic}", ["--pub-mode", "nchan"]

    def __exit__(self, *exc):
        os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
        shutil.rmtree(self.prefix, ignore_errors=True)


SCALEOUT_NGINX = """
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    upstream hub {{ {servers} }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://hub;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


def start_redis(prefix):
    """A memory-only redis-server on 127.0.0.1 (its log in `prefix`); returns (process, port).
    Bound to 127.0.0.1 alone: redis's default (every address, v4 and v6) fails when a load
    generator's socket on another 127.0.0.x holds the port, and a free port may be taken before
    redis binds it, so it gets three tries."""
    for _ in range(3):
        port = free_port()
        with open(Path(prefix) / "redis.log", "w") as log:
            proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no", "--dir", prefix],
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_port(port)
            return proc, port
        except RuntimeError:
            proc.kill()
            proc.wait()
            print("redis-server did not start:\n" + (Path(prefix) / "redis.log").read_text()[-2000:],
                  file=sys.stderr)
    raise RuntimeError("redis-server did not start")


class ScaleOut:
    """Redis, three hub nodes on the Redis transport, and nginx spreading subscribers over them;
    updates are published to the first node."""

    name = "3 nodes over Redis"

    def __enter__(self):
        self.prefix = tempfile.mkdtemp(prefix="scaleout-bench-")
        self.redis, self.redis_port = start_redis(self.prefix)
        self.nodes = [Hub(f"redis://127.0.0.1:{self.redis_port}/0").__enter__() for _ in range(3)]
        self.port = free_port()
        servers = " ".join(f"server 127.0.0.1:{n.port};" for n in self.nodes)
        conf = Path(self.prefix) / "nginx.conf"
        conf.write_text(SCALEOUT_NGINX.format(prefix=self.prefix, servers=servers, port=self.port))
        self.nginx = subprocess.Popen([NGINX, "-p", self.prefix, "-c", str(conf), "-g", "daemon off;"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
        wait_port(self.port)
        return self

    def pids(self):
        return [n.proc.pid for n in self.nodes]

    def urls(self, topic):
        first = self.nodes[0]
        sub = f"http://127.0.0.1:{self.port}/.well-known/mercure?topic=%2F{topic}"
        pub = f"http://127.0.0.1:{first.port}/.well-known/mercure"
        return sub, pub, ["--pub-mode", "mercure", "--token", first.token, "--topic", f"/{topic}"]

    def __exit__(self, *exc):
        os.killpg(self.nginx.pid, 15)
        for n in self.nodes:
            n.__exit__()
        self.redis.terminate()
        self.redis.wait(10)
        shutil.rmtree(self.prefix, ignore_errors=True)


class Nodes:
    """Redis and three hub nodes on the Redis transport, no proxy: each load generator talks to
    its own node directly."""

    def __init__(self, count=3):
        self.count = count

    def __enter__(self):
        self.prefix = tempfile.mkdtemp(prefix="nodes-bench-")
        self.redis, self.redis_port = start_redis(self.prefix)
        self.nodes = []
        for _ in range(self.count):
            self.nodes.append(Hub(f"redis://127.0.0.1:{self.redis_port}/0").__enter__())
        return self

    def __exit__(self, *exc):
        for n in self.nodes:
            n.__exit__()
        self.redis.terminate()
        self.redis.wait(10)
        shutil.rmtree(self.prefix, ignore_errors=True)


def rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def scaleout_50k(quick, runs, json_out=None):
    """50,000 subscribers on three nodes over one Redis: three load generators at once, one per
    node, each with a third of the subscribers on its own topic, each publishing its own events
    through its own node, so every update goes through Redis and is fanned out by the node that
    holds its subscribers."""
    k = 10 if quick else 1
    total = 50000 // k
    counts = [total // 3 + (1 if i < total % 3 else 0) for i in range(3)]
    events, rate = 20, 2
    # Every loadgen waits --settle-ms after its own subscribers are connected, so its publishing
    # (events / rate = 10 s) overlaps the others' as long as their connects end within the settle.
    settle_ms = 10000 if quick else 45000
    rows = []
    for run in range(1, runs + 1):
        with Nodes(3) as cluster:
            time.sleep(0.5)
            procs, logs = [], []
            t0 = time.time()
            for i, (node, n) in enumerate(zip(cluster.nodes, counts)):
                sub, pub, extra = node.urls(f"scale{i}")
                cmd = [str(LOADGEN), "--sub-url", sub, "--pub-url", pub, *extra,
                       "--server-pid", str(node.proc.pid), "--subscribers", str(n),
                       "--events", str(events), "--rate", str(rate), "--connect-concurrency", "256",
                       "--settle-ms", str(settle_ms), "--max-duration", "400s", "--io-timeout", "30s"]
                if i == 0:
                    print("loadgen command (node 0): " + " ".join(cmd), file=sys.stderr)
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                log = []

                def pump(stream=proc.stderr, log=log, i=i):
                    for line in stream:
                        log.append((time.time() - t0, line.rstrip()))
                        print(f"[{time.time() - t0:6.1f} s] node {i}: {line.rstrip()}", file=sys.stderr)

                out = []
                threads = [threading.Thread(target=pump, daemon=True),
                           threading.Thread(target=lambda proc=proc, out=out: out.append(proc.stdout.read()),
                                            daemon=True)]
                for t in threads:
                    t.start()
                procs.append((proc, threads, out))
                logs.append(log)
            outs = []
            for proc, threads, out in procs:
                proc.wait(timeout=500)
                for t in threads:
                    t.join(10)
                outs.append("".join(out))
            procs = [p for p, _, _ in procs]
            results = []
            redis_rss = rss_kib(cluster.redis.pid)
            for i, (proc, out) in enumerate(zip(procs, outs)):
                lines = [l for l in out.splitlines() if l.startswith("{")]
                summary = "\n".join(l for l in out.splitlines() if not l.startswith("{"))
                print(f"node {i} summary:\n{summary}", file=sys.stderr)
                if proc.returncode != 0 or not lines:
                    raise RuntimeError(f"loadgen {i} failed ({proc.returncode})")
                r = json.loads(lines[-1])
                start = next((t for t, l in logs[i] if "publishing" in l), None)
                r["publish_start_s"] = round(start, 1) if start is not None else None
                results.append(r)
                rows.append({"run": run, "node": i, "topic": f"/scale{i}", "result": r,
                             "redis_rss_kib": redis_rss})
                print(f"run {run} / node {i}: {json.dumps(r)}", file=sys.stderr)
            if json_out:
                Path(json_out).write_text(json.dumps(rows, indent=1))
        windows = [(r["publish_start_s"], r["publish_start_s"] + r["publish_duration_s"])
                   for r in results if r["publish_start_s"] is not None]
        overlap = (min(e for _, e in windows) - max(s for s, _ in windows)) if len(windows) == 3 else None
        print(f"\nRun {run}: {total:,} subscribers over 3 nodes, {events} events at {rate}/s per node; "
              f"publishing windows (s from start): "
              + ", ".join(f"{a:.1f}–{b:.1f}" for a, b in windows)
              + (f"; all three publish at once for {overlap:.1f} s" if overlap and overlap > 0
                 else "; the three publishing windows do NOT all overlap")
              + (f"; redis RSS {redis_rss / 1024:.0f} MiB" if redis_rss else "") + "\n")
        print("| run | node | subscribers connected | connect failures | deliveries | deliveries/s | "
              "p50 µs | p99 µs | missing | dup | hub RSS after connect MiB | RSS/subscriber bytes | "
              "CPU µs/delivery |")
        print("|" + " --- |" * 13)
        for i, r in enumerate(results):
            rss = r.get("server_rss_kib_idle")
            print(f"| {run} | {i} (/scale{i}) | {r['connected']:,} of {r['subscribers']:,} | "
                  f"{r['connect_failures']} | {r['deliveries']:,} | {r['deliveries_per_s']:.0f} | "
                  f"{r['latency_us_p50']} | {r['latency_us_p99']} | {r['missing']} | {r['duplicates']} | "
                  f"{rss / 1024:.0f} | {r.get('server_bytes_per_subscriber') or 0:.0f} | "
                  f"{r.get('server_cpu_us_per_delivery') or float('nan'):.2f} |")
        tot = lambda key: sum(r[key] for r in results)
        conn = tot("connected")
        print(f"| {run} | total | {conn:,} of {tot('subscribers'):,} | {tot('connect_failures')} | "
              f"{tot('deliveries'):,} | {tot('deliveries_per_s'):.0f} (sum) | "
              f"{max(r['latency_us_p50'] or 0 for r in results)} (max) | "
              f"{max(r['latency_us_p99'] or 0 for r in results)} (max) | {tot('missing')} | "
              f"{tot('duplicates')} | {sum(r.get('server_rss_kib_idle') or 0 for r in results) / 1024:.0f} | "
              f"{sum((r.get('server_bytes_per_subscriber') or 0) * r['connected'] for r in results) / max(conn, 1):.0f} | |")


def loadgen(server, args, idle=0, sub=None, idle_sub=None, storm_sub=None):
    """Runs loadgen on /bench; `sub`, `idle_sub` and `storm_sub` are percent-encoded selectors
    for the measured, idle and storm subscribers (hub only)."""
    sub_url, pub, extra = server.urls("bench")
    if sub:
        sub_url = server.sub_url(sub)
    cmd = [str(LOADGEN), "--sub-url", sub_url, "--pub-url", pub, *extra, "--json", "--max-duration", "240s"]
    if idle:
        idle_url = server.sub_url(idle_sub) if idle_sub else server.urls("other")[0]
        cmd += ["--idle-subscribers", str(idle), "--idle-url", idle_url]
    if storm_sub:
        cmd += ["--storm-url", server.sub_url(storm_sub)]
    for pid in server.pids():
        cmd += ["--server-pid", str(pid)]
    cmd += [str(a) for a in args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def scenarios(quick):
    k = 10 if quick else 1
    return [
        ("1,000 subscribers, 100 events/s", dict(args=["--subscribers", 1000 // k, "--events", 1000 // k, "--rate", 100])),
        ("1,000 subscribers, max rate", dict(args=["--subscribers", 1000 // k, "--events", 5000 // k, "--rate", 0, "--publishers", 4])),
        ("10,000 subscribers, 5 events/s", dict(args=["--subscribers", 10000 // k, "--events", 50, "--rate", 5])),
        # More than two cores can write: the hub answers a publish once fanned out, so 4
        # publishers keep at most 4 updates between acceptance and delivery.
        ("10,000 subscribers, 200 events/s (overload)", dict(args=["--subscribers", 10000 // k, "--events", 1000 // k, "--rate", 200, "--publishers", 4, "--connect-concurrency", 512])),
        ("100 subscribers, 8 KB events", dict(args=["--subscribers", 100, "--events", 500 // k, "--rate", 100, "--data-size", 8192])),
        ("100 subscribers (10% stalled), 8 KB events", dict(args=["--subscribers", 100, "--events", 500 // k, "--rate", 100, "--data-size", 8192, "--stalled-percent", 10])),
        ("10 subscribers drop and resume", dict(args=["--subscribers", 10, "--events", 1000 // k, "--rate", 100, "--drop-resume"])),
        ("1 subscriber, 0 others", dict(args=["--subscribers", 1, "--events", 2000 // k, "--rate", 500])),
        ("1 subscriber, 1,000 others on another topic", dict(args=["--subscribers", 1, "--events", 2000 // k, "--rate", 500], idle=1000 // k)),
        ("1 subscriber, 10,000 others on another topic", dict(args=["--subscribers", 1, "--events", 2000 // k, "--rate", 500], idle=10000 // k)),
    ]


def hub_scenarios(quick):
    """Scenarios for the hub alone (Nchan has no equivalent), run old vs new with --old-hub."""
    k = 10 if quick else 1
    storm = 10000 // k
    # 10,000 updates on /fill fill the history first; the storm subscribers subscribe to /storm,
    # where nothing is published, so each reconnect filters the whole history and gets nothing.
    # 32 publisher connections keep 100 events/s going while a publish takes up to 320 ms.
    # A 100 ms heartbeat: the old hub notices a departed subscriber only at its next write, so
    # with the default 15 s its departed storm connections pile up past the open-files limit.
    base = ["--subscribers", 100, "--events", 2000 // k, "--rate", 100, "--prefill", 10000,
            "--publishers", 32, "--settle-ms", 5000]
    storm_hub = ["--keep-alive", "100ms"]
    big = ["--subscribers", 10000 // k, "--events", 50, "--rate", 5, "--connect-concurrency", 512]
    few = ["--subscribers", 1, "--events", 2000 // k, "--rate", 500]
    return [
        ("100 subscribers, 100 events/s, 10,000 updates in history, no storm",
         dict(args=base, hub=storm_hub)),
        (f"same + reconnect storm: {storm:,} subscribers x 3 (Last-Event-ID: earliest)",
         dict(args=base + ["--storm-subscribers", storm, "--storm-rounds", 3,
                           "--storm-last-event-id", "earliest"], storm_sub="%2Fstorm", hub=storm_hub)),
        (f"{10000 // k:,} subscribers on /bench, 5 events/s", dict(args=big, sub="%2Fbench")),
        (f"{10000 // k:,} subscribers on /{{name}}, 5 events/s", dict(args=big, sub="%2F%7Bname%7D")),
        (f"1 subscriber, {10000 // k:,} others on /other", dict(args=few, idle=10000 // k, idle_sub="%2Fother")),
        (f"1 subscriber, {10000 // k:,} others on /other/{{name}}",
         dict(args=few, idle=10000 // k, idle_sub="%2Fother%2F%7Bname%7D")),
        # Mercure 1.0 matchers: an exact one, one shared URL pattern that matches, one shared
        # pattern that matches nothing published, and a distinct pattern per subscriber (each
        # compiled once: the hub's template memory is raised to hold 10,000 of them).
        (f"{10000 // k:,} subscribers on match=/bench, 5 events/s", dict(args=big, sub="match=%2Fbench")),
        (f"{10000 // k:,} subscribers on match_urlpattern=/:name, 5 events/s",
         dict(args=big, sub="match_urlpattern=%2F%3Aname")),
        (f"1 subscriber, {10000 // k:,} others on match_urlpattern=/other/:id",
         dict(args=few, idle=10000 // k, idle_sub="match_urlpattern=%2Fother%2F%3Aid")),
        (f"1 subscriber, {10000 // k:,} others on distinct patterns /other/{{n}}/:id",
         dict(args=few, idle=10000 // k, idle_sub="match_urlpattern=%2Fother%2F{n}%2F%3Aid",
              hub=["--max-template-memory", "2000000000"])),
    ]


HUB_COLUMNS = [
    ("p50 µs", "latency_us_p50", "{:.0f}"),
    ("p99 µs", "latency_us_p99", "{:.0f}"),
    ("publish RTT p99 µs", "publish_rtt_us_p99", "{:.0f}"),
    ("storm reconnects/s", "storm_connects_per_s", "{:.0f}"),
    ("storm s", "storm_duration_s", "{:.1f}"),
    ("storm incomplete/failed", None, None),
    ("CPU µs/delivery", "server_cpu_us_per_delivery", "{:.2f}"),
    ("CPU µs/publish", "server_cpu_us_per_publish", "{:.1f}"),
    ("bytes/subscriber", "server_bytes_per_subscriber", "{:.0f}"),
    ("missing", "missing", "{}"),
    ("dup", "duplicates", "{}"),
]


def wanted(only, name):
    """Whether `--only` selects the scenario `name`: one of its `|`-separated parts is in it."""
    return not only or any(part in name for part in only.split("|"))


def run_hub_only(opts):
    """Every hub-only scenario, `--runs` times; with --old-hub, old then new for each."""
    binaries = ([("old", Path(opts.old_hub))] if opts.old_hub else []) + [("new", HUB)]
    rows = []
    for run in range(1, opts.runs + 1):
        for name, spec in hub_scenarios(opts.quick):
            if not wanted(opts.only, name):
                continue
            for label, binary in binaries:
                with Hub(binary=binary, args=spec.get("hub", ())) as server:
                    time.sleep(0.5)
                    r = loadgen(server, spec["args"], spec.get("idle", 0), spec.get("sub"),
                                spec.get("idle_sub"), spec.get("storm_sub"))
                print(f"run {run} / {name} / {label}: {json.dumps(r)}", file=sys.stderr)
                rows.append({"run": run, "scenario": name, "binary": label, "result": r})
    if opts.json_out:
        Path(opts.json_out).write_text(json.dumps(rows, indent=1))
    print("| run | scenario | binary | " + " | ".join(c[0] for c in HUB_COLUMNS) + " |")
    print("|" + " --- |" * (len(HUB_COLUMNS) + 3))
    for row in rows:
        r, cells = row["result"], []
        for _, key, fmt in HUB_COLUMNS:
            if key is None:
                cells.append(f"{r.get('storm_incomplete', 0)}/{r.get('storm_failures', 0)}"
                             if r.get("storm_subscribers") else "")
            elif r.get(key) is None or (key.startswith("storm") and not r.get("storm_subscribers")):
                cells.append("")
            else:
                cells.append(fmt.format(r[key]))
        print(f"| {row['run']} | {row['scenario']} | {row['binary']} | " + " | ".join(cells) + " |")


COLUMNS = [
    ("deliveries/s", "deliveries_per_s", "{:.0f}"),
    ("p50 µs", "latency_us_p50", "{:.0f}"),
    ("p99 µs", "latency_us_p99", "{:.0f}"),
    ("connect p50 ms", "connect_ms_p50", "{:.2f}"),
    ("connect p99 ms", "connect_ms_p99", "{:.2f}"),
    ("CPU µs/delivery", "server_cpu_us_per_delivery", "{:.2f}"),
    ("exact CPU µs/delivery", "server_cpu_exact_us_per_delivery", "{:.2f}"),
    ("CPU µs/publish", "server_cpu_us_per_publish", "{:.1f}"),
    ("bytes/subscriber", "server_bytes_per_subscriber", "{:.0f}"),
    ("missing", "missing", "{}"),
    ("dup", "duplicates", "{}"),
]


DURABILITY = [
    ("memory only", ("--data-dir", "none")),
    ("durable, --fsync always", ("--fsync", "always")),
    ("durable, --fsync batch", ("--fsync", "batch")),
    ("durable, --fsync never", ("--fsync", "never")),
]


def durability(quick, rounds, only=None):
    """Publish throughput and latency of each history mode, side by side, `rounds` times in turn;
    then the disk bytes per stored update. `only`: the cases whose name contains it."""
    k = 10 if quick else 1
    cases = [
        ("max rate, 4 publishers, 1 subscriber",
         ["--subscribers", 1, "--events", 20000 // k, "--rate", 0, "--publishers", 4]),
        ("max rate, 16 publishers, 1 subscriber",
         ["--subscribers", 1, "--events", 20000 // k, "--rate", 0, "--publishers", 16]),
        ("500 events/s, 1 publisher, 100 subscribers",
         ["--subscribers", 100, "--events", 5000 // k, "--rate", 500]),
        # The fan-out comparison's first scenario: what each mode adds per delivery.
        ("100 events/s, 1 publisher, 1,000 subscribers",
         ["--subscribers", 1000 // k, "--events", 1000 // k, "--rate", 100]),
    ]
    cases = [c for c in cases if not only or only in c[0]]
    print("| case | history | run | publishes/s | p50 µs | p99 µs | CPU µs/publish | CPU µs/delivery | disk bytes/update | missing | dup |")
    print("|" + " --- |" * 11)
    for case, args in cases:
        for run in range(1, rounds + 1):
            for label, store in DURABILITY:
                with Hub(store=store) as server:
                    time.sleep(0.5)
                    r = loadgen(server, args)
                    # History keeps the last 10,000 (the hub's --history-size above).
                    stored = min(r.get("events_published", 0), 10000)
                    disk = server.disk_bytes() / stored if store[0] != "--data-dir" and stored else None
                print(f"{case} / {label}: {json.dumps(r)}", file=sys.stderr)
                disk_cell = f"{disk:.0f}" if disk else "–"
                print(f"| {case} | {label} | {run} | {r['events_published'] / r['publish_duration_s']:.0f} | "
                      f"{r['latency_us_p50']} | {r['latency_us_p99']} | "
                      f"{r['server_cpu_us_per_publish']:.1f} | {r['server_cpu_us_per_delivery']:.2f} | "
                      f"{disk_cell} | {r['missing']} | {r['duplicates']} |")


def cpu_modes(quick):
    """User and kernel CPU per delivery of each server at the two fixed-rate scenarios: how much
    of a delivery is the server's own work, and how much the kernel's (write, loopback TCP)."""
    tick = os.sysconf("SC_CLK_TCK")

    def times(pids):
        user = kernel = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user, kernel = user + int(fields[11]), kernel + int(fields[12])
        return user, kernel

    print("| scenario | server | user µs/delivery | kernel µs/delivery | kernel share |")
    print("| --- | --- | --- | --- | --- |")
    for name, spec in scenarios(quick):
        if "events/s" not in name:
            continue
        for server_cls in (Hub, Nchan):
            with server_cls() as server:
                time.sleep(0.5)
                before = times(server.pids())
                r = loadgen(server, spec["args"])
                after = times(server.pids())
            user, kernel = ((a - b) / tick * 1e6 / max(r["deliveries"], 1) for a, b in zip(after, before))
            print(f"| {name} | {server_cls.name} | {user:.2f} | {kernel:.2f} | {kernel / max(user + kernel, 1e-9):.0%} |",
                  flush=True)


def resume_storm(quick, runs, old_hub=None):
    """The hub alone (and `old_hub` before it, if given): 10,000 subscribers (--quick: 1,000)
    drop at once, 1,000 updates are published while they are away, and they all reconnect
    within a second with their Last-Event-ID: the time until the last one has its replay, the
    lost and duplicated updates (must be 0) and the server's exact CPU meanwhile."""
    n = 1000 if quick else 10000
    args = ["--subscribers", n, "--connect-concurrency", 512, "--events", 1150, "--rate", 100,
            "--publishers", 4, "--resume-storm", "--resume-storm-after", 50,
            "--resume-storm-missed", 1000, "--resume-storm-spread", "1s"]
    print("| hub | run | reconnected | without replay | last replay s | each p50 / p99 ms | "
          "server CPU ms (exact) | missing | duplicates |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in range(1, runs + 1):
        for label, binary in ((("old", Path(old_hub)),) if old_hub else ()) + (("new", None),):
            with Hub(binary=binary) as server:
                time.sleep(0.5)
                r = loadgen(server, args)
            print(f"resume storm / {label}: {json.dumps(r)}", file=sys.stderr)
            print(f"| {label} | {run} | {r.get('resume_storm_reconnected')} | "
                  f"{r.get('resume_storm_without_replay')} | {r.get('resume_storm_last_replay_s')} | "
                  f"{r.get('resume_storm_replay_ms_p50')} / {r.get('resume_storm_replay_ms_p99')} | "
                  f"{r.get('resume_storm_cpu_exact_ms')} | {r['missing']} | {r['duplicates']} |", flush=True)


def ratio_rounds(quick, rounds, only):
    """The fixed-rate scenarios `rounds` times, the hub and Nchan in turn each round: the CPU
    per delivery ratio of each round and their median. One run decides little on a shared
    machine whose speed drifts by 10% within an hour."""
    print("| scenario | round | hub CPU µs/delivery | Nchan CPU µs/delivery | ratio | p99 hub / Nchan µs | missing |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, spec in scenarios(quick):
        if "events/s" not in name or (only and only not in name):
            continue
        ratios = []
        for rnd in range(1, rounds + 1):
            got = {}
            for server_cls in (Hub, Nchan):
                with server_cls() as server:
                    time.sleep(0.5)
                    got[server_cls.name] = loadgen(server, spec["args"])
                print(f"{name} / round {rnd} / {server_cls.name}: {json.dumps(got[server_cls.name])}",
                      file=sys.stderr)
            hub, nchan = got[Hub.name], got[Nchan.name]
            ratio = hub["server_cpu_us_per_delivery"] / nchan["server_cpu_us_per_delivery"]
            ratios.append(ratio)
            print(f"| {name} | {rnd} | {hub['server_cpu_us_per_delivery']:.2f} | "
                  f"{nchan['server_cpu_us_per_delivery']:.2f} | {ratio:.2f}× | "
                  f"{hub['latency_us_p99']} / {nchan['latency_us_p99']} | "
                  f"{hub['missing']} / {nchan['missing']} |", flush=True)
        print(f"| {name} | median | | | **{statistics.median(ratios):.2f}×** | | |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the load")
    parser.add_argument("--only", help="run only scenarios whose name contains this (or one of its |-separated parts)")
    parser.add_argument("--json-out", help="write every result here")
    parser.add_argument("--scaleout", action="store_true",
                        help="only compare 1,000 subscribers over 3 Redis-linked nodes with 1 node")
    parser.add_argument("--scaleout-50k", action="store_true",
                        help="only 50,000 subscribers over 3 Redis-linked nodes: 3 load generators at once, "
                             "one per node (--quick: 5,000)")
    parser.add_argument("--bin-dir", metavar="DIR",
                        help="run the sse-hub and loadgen already built in DIR (skips the build)")
    parser.add_argument("--durability", action="store_true",
                        help="only compare the hub's history modes: memory only, and durable with each --fsync")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of each case (--durability, --ratio-rounds)")
    parser.add_argument("--ratio-rounds", action="store_true",
                        help="only the fixed-rate scenarios, --rounds times, hub and Nchan in turn: "
                             "each round's CPU ratio and the median")
    parser.add_argument("--cpu-modes", action="store_true",
                        help="user vs kernel CPU per delivery of both servers at the fixed rates")
    parser.add_argument("--hub-only", action="store_true",
                        help="only the hub's reconnect-storm and template scenarios (no Nchan)")
    parser.add_argument("--old-hub", metavar="PATH",
                        help="with --hub-only: also run this sse-hub binary, before the new one")
    parser.add_argument("--memory-history", action="store_true",
                        help="run the hub with its history in memory only (--data-dir none), "
                             "as Nchan keeps its messages")
    parser.add_argument("--resume-storm", action="store_true",
                        help="only the hub's resume storm: 10,000 subscribers reconnecting within a second "
                             "with Last-Event-ID, 1,000 updates missed (with --old-hub: that binary too)")
    parser.add_argument("--runs", type=int, default=1,
                        help="with --hub-only or --scaleout-50k: repeat everything")
    opts = parser.parse_args()
    if opts.memory_history:
        global STORE
        STORE = ("--data-dir", "none")
    if opts.bin_dir:
        use_bin_dir(opts.bin_dir)
    setup(nchan=not (opts.hub_only or opts.durability or opts.scaleout_50k or opts.resume_storm),
          build=not opts.bin_dir)
    if opts.scaleout_50k:
        scaleout_50k(opts.quick, opts.runs, opts.json_out)
        return
    if opts.durability:
        durability(opts.quick, opts.rounds, opts.only)
        return
    if opts.resume_storm:
        resume_storm(opts.quick, opts.runs, opts.old_hub)
        return
    if opts.cpu_modes:
        cpu_modes(opts.quick)
        return
    if opts.ratio_rounds:
        ratio_rounds(opts.quick, opts.rounds, opts.only)
        return
    results = []
    if opts.hub_only:
        run_hub_only(opts)
        return
    if opts.scaleout:
        n = 100 if opts.quick else 1000
        args = ["--subscribers", n, "--events", 1000, "--rate", 100]
        for label, make in (("1 node, local transport", Hub), ("3 nodes over Redis, via nginx", ScaleOut)):
            with make() as server:
                time.sleep(0.5)
                r = loadgen(server, args)
            print(f"{label}: {json.dumps(r)}", file=sys.stderr)
            print(f"| {n:,} subscribers, 100 events/s | {label} | {r['deliveries_per_s']:.0f} | "
                  f"{r['latency_us_p50']} | {r['latency_us_p99']} | {r['missing']} | {r['duplicates']} |")
        return
    for name, spec in scenarios(opts.quick):
        if not wanted(opts.only, name):
            continue
        row = {"scenario": name}
        for server_cls in (Hub, Nchan):
            with server_cls() as server:
                time.sleep(0.5)
                row[server_cls.name] = loadgen(server, spec["args"], spec.get("idle", 0))
            print(f"{name} / {server_cls.name}: {json.dumps(row[server_cls.name])}", file=sys.stderr)
        results.append(row)
    if not opts.only or "19,000" in opts.only:
        n = 1900 if opts.quick else 19000
        with Hub() as server:
            time.sleep(0.5)
            big = loadgen(server, ["--subscribers", n, "--events", 20, "--rate", 5,
                                   "--connect-concurrency", 512])
        print(f"19,000 subscribers / sse-hub: {json.dumps(big)}", file=sys.stderr)
        results.append({"scenario": f"{n:,} subscribers, 5 events/s (hub only)", "sse-hub": big})
    if opts.json_out:
        Path(opts.json_out).write_text(json.dumps(results, indent=1))
    print("| scenario | server | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("|" + " --- |" * (len(COLUMNS) + 2))
    for row in results:
        for server in ("sse-hub", "nginx+Nchan"):
            if server not in row:
                continue
            r = row[server]
            cells = [fmt.format(r.get(key, float("nan"))) for _, key, fmt in COLUMNS]
            print(f"| {row['scenario']} | {server} | " + " | ".join(cells) + " |")
        if "nginx+Nchan" not in row:
            continue
        hub, nchan = row["sse-hub"], row["nginx+Nchan"]
        ratios = []
        for label, key, _ in COLUMNS[:6]:
            a, b = hub.get(key), nchan.get(key)
            ratios.append(f"{a / b:.2f}×" if a and b else "–")
        print(f"| {row['scenario']} | ratio hub/Nchan | " + " | ".join(ratios) + " | | |")


if __name__ == "__main__":
    main()
