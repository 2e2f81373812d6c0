#!/usr/bin/env python3
"""walship inside a Python service (the loadable extension) against walship beside it (the
sidecar) and against the Rust embedding, side by side in one run:

1. commit-to-durable latency, file replica: p50/p99 of `handle.wait_durable()` after each
   commit in Debian's python3, and of `EngineHandle::wait_durable` in examples/embedded.rs
   (the Rust embedding), same number of one-row transactions;
2. the cost of replication to the host: a Python writer at a fixed commit rate, alone
   (baseline), with the engine inside, and with `walship replicate` beside it: CPU seconds
   of each process (wait4) and its peak RSS (VmHWM, read just before it exits).

    bash .ci/extension --release && bash .ci/extension-hosts
    cargo build --release --bin walship --example embedded
    python3 benches/ext_python.py [--commits 500] [--rate 50] [--seconds 20] [--reps 2]

The tools alternate per repetition (ABBA...), and the medians are printed as a markdown
table. Debian 12's SQLite is too old for the extension: the hosts' newer libsqlite3
(target/ext-hosts/lib) goes first on LD_LIBRARY_PATH for every Python run, sidecar too.
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS = os.path.join(ROOT, "target", "ext-hosts")
PY = os.path.join(HOSTS, "venv", "bin", "python")
EXT = os.path.join(ROOT, "target", "release", "libwalship.so")
WALSHIP = os.path.join(ROOT, "target", "release", "walship")
EMBEDDED = os.path.join(ROOT, "target", "release", "examples", "embedded")

LATENCY = r"""
import os, sqlite3, sys, time
import walship
db, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=NORMAL")
conn.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT NOT NULL, qty INTEGER NOT NULL)")
h = walship.replicate(conn, replica=url)
lat = []
for i in range(n):
    conn.execute("INSERT INTO orders(item, qty) VALUES (?, ?)", (f"item-{i}", i % 7 + 1))
    t = time.perf_counter()
    h.wait_durable(timeout=10)
    lat.append(time.perf_counter() - t)
h.stop()
lat.sort()
pct = lambda p: lat[round((len(lat) - 1) * p)]
print(f"p50 {pct(0.5) * 1000:.3f} p99 {pct(0.99) * 1000:.3f}")
"""

WRITER = r"""
import os, sqlite3, sys, time
mode, db, url, rate, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
conn = sqlite3.connect(db, isolation_level=None)
if mode == "inside":
    import walship
    h = walship.replicate(conn, replica=url)
period = 1.0 / rate
start = time.monotonic()
i = 0
while time.monotonic() - start < seconds:
    conn.execute("INSERT INTO docs(body) VALUES (?)", ("x" * 200 + str(i),))
    i += 1
    next_at = start + i * period
    delay = next_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
if mode == "inside":
    h.stop()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(i, hwm)
"""


def env():
    e = dict(os.environ)
    e["LD_LIBRARY_PATH"] = os.path.join(HOSTS, "lib")
    e["WALSHIP_EXTENSION"] = EXT
    e["PYTHONPATH"] = os.path.join(ROOT, "src", "python")
    e.pop("WALSHIP_LOG", None)
    return e


def parse_duration_ms(text):
    """Rust's Debug of a Duration: 1.234ms, 950.1µs, 2s."""
    m = re.fullmatch(r"([0-9.]+)(ns|µs|us|ms|s)", text)
    if not m:
        raise ValueError(text)
    scale = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return float(m.group(1)) * scale


def latency_python(tmp, n):
    db = os.path.join(tmp, "app.db")
    out = subprocess.run([PY, "-c", LATENCY, db, "file://" + os.path.join(tmp, "replica"), str(n)],
                         env=env(), capture_output=True, text=True, check=True)
    m = re.search(r"p50 ([0-9.]+) p99 ([0-9.]+)", out.stdout)
    return float(m.group(1)), float(m.group(2))


def latency_rust(tmp, n):
    out = subprocess.run([EMBEDDED, tmp, str(n)], capture_output=True, text=True, check=True)
    m = re.search(r"p50 (\S+), p99 (\S+),", out.stdout)
    return parse_duration_ms(m.group(1)), parse_duration_ms(m.group(2))


def wait4(proc):
    """CPU seconds of a child, from wait4(). (Its ru_maxrss is not used: a child's starts
    at its parent's high-water mark at fork, this harness's own ~17 MB.)"""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime


def vm_hwm_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmHWM:")).split()[1]) / 1024.0


def cost(tmp, mode, rate, seconds):
    """(host CPU s, host peak RSS MB, sidecar CPU s, sidecar peak RSS MB, commits)."""
    db = os.path.join(tmp, "w.db")
    url = "file://" + os.path.join(tmp, "replica")
    import sqlite3
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT)")
    c.commit()
    c.close()
    sidecar = None
    if mode == "sidecar":
        sidecar = subprocess.Popen([WALSHIP, "replicate", db, url], env=env(),
                                   stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "sidecar.log"), "w"))
        time.sleep(0.5)
    w = subprocess.Popen([PY, "-c", WRITER, mode, db, url, str(rate), str(seconds)], env=env(),
                         stdout=subprocess.PIPE, text=True)
    out = w.stdout.read()
    host_cpu = wait4(w)
    if w.returncode != 0:
        raise SystemExit(f"writer ({mode}) failed")
    commits, hwm_kb = out.split()
    host_rss = int(hwm_kb) / 1024.0
    side_cpu = side_rss = 0.0
    if sidecar:
        time.sleep(1.5)  # let it ship the last commits, as the inside engine's stop() does
        side_rss = vm_hwm_mb(sidecar.pid)
        sidecar.send_signal(signal.SIGTERM)
        side_cpu = wait4(sidecar)
        if sidecar.returncode != 0:
            raise SystemExit("walship replicate failed")
    return host_cpu, host_rss, side_cpu, side_rss, int(commits)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=500)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    for p in (PY, EXT, WALSHIP, EMBEDDED):
        if not os.path.exists(p):
            sys.exit(f"missing {p}: see this file's docstring for the build commands")

    lat = {"python": [], "rust": []}
    costs = {"baseline": [], "inside": [], "sidecar": []}
    for rep in range(a.reps):
        order = ["python", "rust"] if rep % 2 == 0 else ["rust", "python"]
        for who in order:
            with tempfile.TemporaryDirectory() as tmp:
                lat[who].append(latency_python(tmp, a.commits) if who == "python" else latency_rust(tmp, a.commits))
        modes = ["baseline", "inside", "sidecar"] if rep % 2 == 0 else ["sidecar", "inside", "baseline"]
        for mode in modes:
            with tempfile.TemporaryDirectory() as tmp:
                costs[mode].append(cost(tmp, mode, a.rate, a.seconds))
        print(f"rep {rep}: latency {lat}, costs { {k: v[-1] for k, v in costs.items()} }", file=sys.stderr)

    med = lambda xs: statistics.median(xs)
    print(f"\n## ext_python.py --commits {a.commits} --rate {a.rate:g} --seconds {a.seconds:g} --reps {a.reps}\n")
    print("| commit-to-durable, file replica | p50 ms | p99 ms |")
    print("|---|---|---|")
    for who, name in (("python", "Python, engine inside (`handle.wait_durable()`)"), ("rust", "Rust embedding (examples/embedded.rs)")):
        print(f"| {name} | {med([x[0] for x in lat[who]]):.3f} | {med([x[1] for x in lat[who]]):.3f} |")
    print(f"\n| {a.rate:g} commits/s for {a.seconds:g} s | host CPU s | host peak RSS MB | sidecar CPU s | sidecar peak RSS MB | total CPU s |")
    print("|---|---|---|---|---|---|")
    for mode, name in (("baseline", "no replication"), ("inside", "engine inside"), ("sidecar", "walship replicate beside")):
        rows = costs[mode]
        h = med([r[0] for r in rows]); hr = med([r[1] for r in rows])
        s = med([r[2] for r in rows]); sr = med([r[3] for r in rows])
        print(f"| {name} | {h:.3f} | {hr:.1f} | {s:.3f} | {sr:.1f} | {h + s:.3f} |")


if __name__ == "__main__":
    main()
