#!/usr/bin/env python3
"""Soak: walship replicate under a steady writer for a long time, with scheduled snapshots
and retention on, restoring the replica every few minutes (with walship and, when found,
the real Litestream v0.3.13) and checking each restore against what was committed.

    cargo build --release && python3 benches/soak.py [--minutes 60] [--rate 20]

($WALSHIP_BIN overrides the binary, e.g. a copy, so a rebuild during the run changes nothing.)

Standard library only. What it checks, every `--restore-every` seconds:
  - the restore passes `PRAGMA integrity_check`;
  - it holds rows 1..K with no gap, each row exactly as the writer wrote it (the row's text
    is a function of its id, so "identical to the source at id K" is checked row by row);
  - K is at least the last id committed 5 s before the restore started (sync-interval is
    1 s: a commit older than that missing from the replica is a lost commit).
Every 10 minutes the writer also runs `PRAGMA wal_checkpoint(TRUNCATE)` (a new generation
for walship) to exercise that path under retention.
It samples walship's RSS and open file descriptors every 10 s and prints a summary: the
figures should be flat. Exit status 1 if any restore failed or walship died.
"""
import argparse, os, shutil, signal, sqlite3, subprocess, sys, tempfile, threading, time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BIN = os.environ.get("WALSHIP_BIN") or os.path.join(ROOT, "target", "release", "walship")


def row_text(i):
    return (f"row {i} " * 40)[: 200 + i % 300]


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def litestream_bin():
    for cand in (os.environ.get("LITESTREAM_BIN"), shutil.which("litestream")):
        if cand and os.path.exists(cand):
            try:
                v = subprocess.run([cand, "version"], capture_output=True, text=True, timeout=30).stdout
            except Exception:
                continue
            if "0.3.13" in v:
                return cand
    return None


class Writer(threading.Thread):
    def __init__(self, path, rate, stop):
        super().__init__(daemon=True)
        self.path, self.rate, self.stop = path, rate, stop
        self.committed = []  # (monotonic time, last id) after each commit
        self.lock = threading.Lock()
        self.error = None

    def last_before(self, t):
        with self.lock:
            best = 0
            for at, i in reversed(self.committed):
                if at <= t:
                    best = i
                    break
            return best

    def run(self):
        try:
            c = sqlite3.connect(self.path, isolation_level=None)
            c.execute("PRAGMA synchronous=NORMAL")
            i = 0
            last_trunc = time.monotonic()
            period = 1.0 / self.rate
            nxt = time.monotonic()
            while not self.stop.is_set():
                n = 1 + i % 5
                c.execute("BEGIN")
                for _ in range(n):
                    i += 1
                    c.execute("INSERT INTO t(id, v) VALUES (?, ?)", (i, row_text(i)))
                c.execute("COMMIT")
                now = time.monotonic()
                with self.lock:
                    self.committed.append((now, i))
                    if len(self.committed) > 100_000:
                        del self.committed[:50_000]
                if now - last_trunc > 600:
                    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    last_trunc = now
                nxt += period
                time.sleep(max(0.0, nxt - time.monotonic()))
            c.close()
        except Exception as e:  # reported in the summary
            self.error = repr(e)


def check_restore(path, must_have):
    c = sqlite3.connect(path)
    ok = c.execute("PRAGMA integrity_check").fetchone()[0]
    if ok != "ok":
        return False, f"integrity_check: {ok}"
    n, mx = c.execute("SELECT count(*), coalesce(max(id), 0) FROM t").fetchone()
    if n != mx:
        return False, f"gap: {n} rows but max id {mx}"
    if mx < must_have:
        return False, f"lost commits: max id {mx} < {must_have} committed 5 s before"
    for i, v in c.execute("SELECT id, v FROM t"):
        if v != row_text(i):
            return False, f"row {i} differs"
    c.close()
    return True, f"{mx} rows"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--rate", type=float, default=20, help="commits per second")
    ap.add_argument("--restore-every", type=float, default=120, help="seconds")
    ap.add_argument("--tmpdir", default=None)
    a = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} not found: run `cargo build --release` first")
    ls = litestream_bin()
    tmp = tempfile.mkdtemp(prefix="walship-soak-", dir=a.tmpdir)
    db = os.path.join(tmp, "app.db")
    rep = os.path.join(tmp, "replica")
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    c.commit()
    c.close()
    cfg = os.path.join(tmp, "litestream.yml")
    open(cfg, "w").write(
        f"dbs:\n  - path: {db}\n    replicas:\n      - url: file://{rep}\n"
        "        sync-interval: 1s\n        snapshot-interval: 3m\n        retention: 6m\n"
        "        retention-check-interval: 1m\n"
    )
    log = open(os.path.join(tmp, "walship.log"), "w")
    proc = subprocess.Popen([BIN, "replicate", "-config", cfg], stdout=log, stderr=subprocess.STDOUT)
    time.sleep(2)
    stop = threading.Event()
    w = Writer(db, a.rate, stop)
    w.start()
    start = time.monotonic()
    end = start + a.minutes * 60
    samples, restores, failures = [], [], []
    next_restore = start + a.restore_every
    try:
        while time.monotonic() < end:
            time.sleep(10)
            if proc.poll() is not None:
                failures.append(f"walship exited with {proc.returncode}")
                break
            samples.append((time.monotonic() - start, rss_kb(proc.pid), fds(proc.pid)))
            if time.monotonic() >= next_restore:
                next_restore += a.restore_every
                must = w.last_before(time.monotonic() - 5)
                for tool, exe in (("walship", BIN), ("litestream", ls)):
                    if not exe:
                        continue
                    out = os.path.join(tmp, f"restore-{tool}.db")
                    for f in (out, out + "-wal", out + "-shm"):
                        if os.path.exists(f):
                            os.remove(f)
                    t0 = time.monotonic()
                    r = subprocess.run([exe, "restore", "-o", out, f"file://{rep}"], capture_output=True, text=True)
                    dt = time.monotonic() - t0
                    if r.returncode != 0:
                        ok, why = False, f"exit {r.returncode}: {r.stderr.strip()[-300:]}"
                    else:
                        ok, why = check_restore(out, must)
                    restores.append((tool, ok, why, dt))
                    print(f"[{(time.monotonic() - start) / 60:5.1f} min] {tool} restore: {'ok' if ok else 'FAILED'} ({why}, {dt:.2f} s); "
                          f"walship RSS {samples[-1][1] / 1024:.1f} MB, {samples[-1][2]} fds", flush=True)
                    if not ok:
                        failures.append(f"{tool}: {why}")
    finally:
        stop.set()
        w.join(10)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if w.error:
        failures.append(f"writer: {w.error}")
    log.close()
    errors = [l.strip() for l in open(os.path.join(tmp, "walship.log")) if " ERROR " in l or "ERROR" in l[:40]]
    dur = (time.monotonic() - start) / 60
    print("\n| measure | value |\n|---|---|")
    print(f"| duration | {dur:.1f} min |")
    print(f"| commits | {w.last_before(time.monotonic())} rows at {a.rate:g} commits/s |")
    for tool in ("walship", "litestream"):
        rs = [r for r in restores if r[0] == tool]
        if rs:
            print(f"| {tool} restores | {sum(1 for r in rs if r[1])}/{len(rs)} identical, slowest {max(r[3] for r in rs):.2f} s |")
    if samples:
        tenth = max(1, len(samples) // 10)
        for name, k in (("RSS (MB)", 1), ("open fds", 2)):
            vals = [s[k] / (1024 if k == 1 else 1) for s in samples]
            first = max(vals[:tenth])
            last = max(vals[-tenth:])
            print(f"| walship {name}: max of first / last tenth, overall max | {first:.1f} / {last:.1f}, {max(vals):.1f} |")
    print(f"| walship ERROR log lines | {len(errors)} |")
    print(f"| replica files at end | {sum(len(f) for _, _, f in os.walk(rep))} |")
    for e in errors[:5]:
        print("  ", e[:200])
    if failures:
        print("\nFAILURES:\n  " + "\n  ".join(failures))
        print(f"(kept {tmp} for inspection)")
        sys.exit(1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
