#!/usr/bin/env python3
"""Soak test for `walship replicate` (issue #7): hours of steady writes, snapshots and
retention, with periodic restores checked row by row and walship's memory and open file
descriptors sampled over time. Standard library only.

A writer thread commits transactions whose contents are a pure function of the highest id
N they reach (the crash matrix uses the same scheme), so any restore can be checked
against the source state at its own N without pausing the writer. walship replicates to a
file replica with a short snapshot interval and retention. Every --restore-every seconds,
`walship restore` must pass integrity_check and hold exactly the state at some N the
writer committed. At the end walship is stopped with SIGTERM (exit 0 required) and a last
restore must equal the source.

    cargo build --release
    python3 benches/soak.py --minutes 60                      # the hour-long run
    python3 benches/soak.py --minutes 3 --walship target/debug/walship

Prints a summary table and exits non-zero if any restore differed or walship died.
"""
import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

M = (1 << 64) - 1
KEEP_RECENT = 5000  # ids newer than N - KEEP_RECENT all stay; older ones only every 50th


def blob_of(i):
    n = 12000 + (i * 7919) % 8000 if i % 11 == 0 else (i * 31) % 300
    x = (i * 0x9E3779B97F4A7C15 + 1) & M
    out = bytearray()
    while len(out) < n:
        x ^= (x << 13) & M
        x ^= x >> 7
        x ^= (x << 17) & M
        out += x.to_bytes(8, "little")
    return bytes(out[:n])


def expected_ids(n):
    return [i for i in range(1, n + 1) if not (i % 50 != 0 and i <= n - KEEP_RECENT)]


def check_db(path):
    """Returns (N, None) if the database at path is exactly the state at its N, else
    (N or None, what is wrong)."""
    try:
        con = sqlite3.connect(path)
        ic = [r[0] for r in con.execute("PRAGMA integrity_check")]
        if ic != ["ok"]:
            return None, f"integrity_check: {ic[:3]}"
        n = con.execute("SELECT n FROM meta WHERE k = 0").fetchone()[0]
        got = con.execute("SELECT id, v, b FROM t ORDER BY id")
        want = iter(expected_ids(n))
        for gid, v, b in got:
            wid = next(want, None)
            if wid != gid:
                return n, f"N={n}: expected row {wid}, found {gid}"
            if v != f"r{gid}" or b != blob_of(gid):
                return n, f"N={n}: row {gid} has wrong contents"
        rest = next(want, None)
        if rest is not None:
            return n, f"N={n}: row {rest} missing"
        con.close()
        return n, None
    except sqlite3.Error as e:
        return None, f"sqlite: {e}"


class Writer(threading.Thread):
    def __init__(self, db, rate):
        super().__init__(daemon=True)
        self.db, self.rate = db, rate
        self.n = 0
        self.committed = {0}
        self.commits = 0
        self.errors = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        con = sqlite3.connect(self.db, isolation_level=None, timeout=10)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, b BLOB NOT NULL)")
        con.execute("CREATE TABLE IF NOT EXISTS meta(k INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        con.execute("INSERT OR IGNORE INTO meta VALUES (0, 0)")
        period = 1.0 / self.rate
        nxt = time.monotonic()
        k = 0
        while not self.stop.is_set():
            k += 1
            step = 20 if k % 200 == 0 else 1 + k % 3
            new = self.n + step
            try:
                con.execute("BEGIN IMMEDIATE")
                con.executemany("INSERT INTO t VALUES (?, ?, ?)",
                                [(i, f"r{i}", blob_of(i)) for i in range(self.n + 1, new + 1)])
                con.execute("DELETE FROM t WHERE id <= ? AND id % 50 != 0", (new - KEEP_RECENT,))
                con.execute("UPDATE meta SET n = ? WHERE k = 0", (new,))
                con.execute("COMMIT")
            except sqlite3.Error as e:
                print(f"writer: rolled back: {e}", file=sys.stderr)
                self.errors += 1
                try:
                    con.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                continue
            with self.lock:
                self.n = new
                self.committed.add(new)
                self.commits += 1
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))
        con.close()


def proc_sample(pid):
    rss = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])  # KiB
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


def dir_stats(root):
    files = size = 0
    for dp, _, names in os.walk(root):
        for n in names:
            files += 1
            try:
                size += os.path.getsize(os.path.join(dp, n))
            except OSError:
                pass
    return files, size


def default_walship():
    here = os.path.dirname(os.path.abspath(__file__))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(here, "..", "target"))
    for prof in ("release", "debug"):
        p = os.path.join(target, prof, "walship")
        if os.path.exists(p):
            return os.path.abspath(p)
    return "walship"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="how long to run (default 60)")
    ap.add_argument("--walship", default=default_walship(), help="the walship binary")
    ap.add_argument("--dir", help="work directory (default: a new temp dir, removed on success)")
    ap.add_argument("--rate", type=float, default=20.0, help="writer transactions per second")
    ap.add_argument("--restore-every", type=float, default=30.0, help="seconds between restores")
    ap.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS/fd samples")
    ap.add_argument("--snapshot-interval", default="1m")
    ap.add_argument("--retention", default="3m")
    ap.add_argument("--retention-check-interval", default="30s")
    ap.add_argument("--csv", help="write every sample (t, rss_kib, fds, replica files, replica bytes) here")
    a = ap.parse_args()

    work = a.dir or tempfile.mkdtemp(prefix="walship-soak-")
    os.makedirs(work, exist_ok=True)
    db = os.path.join(work, "app.db")
    replica = os.path.join(work, "replica")
    cfg = os.path.join(work, "litestream.yml")
    with open(cfg, "w") as f:
        f.write(f"""dbs:
  - path: "{db}"
    monitor-interval: 100ms
    checkpoint-interval: 10s
    replicas:
      - type: file
        path: "{replica}"
        sync-interval: 1s
        snapshot-interval: {a.snapshot_interval}
        retention: {a.retention}
        retention-check-interval: {a.retention_check_interval}
""")
    writer = Writer(db, a.rate)
    writer.start()
    while writer.commits == 0:
        time.sleep(0.05)
    log = open(os.path.join(work, "walship.log"), "w")
    ws = subprocess.Popen([a.walship, "replicate", "-config", cfg], stdout=log, stderr=log,
                          stdin=subprocess.DEVNULL)
    print(f"soak: {a.minutes} min, walship {a.walship} (pid {ws.pid}), work dir {work}", flush=True)

    start = time.monotonic()
    end = start + a.minutes * 60
    samples = []  # (t, rss KiB, fds, replica files, replica bytes)
    restores = []  # (t, N restored, lag in ids, error or None)
    next_sample = start + a.sample_every
    next_restore = start + a.restore_every
    failed = None
    csv = open(a.csv, "w") if a.csv else None
    if csv:
        csv.write("t_s,rss_kib,fds,replica_files,replica_bytes\n")
    while time.monotonic() < end and failed is None:
        time.sleep(0.2)
        if ws.poll() is not None:
            failed = f"walship exited with {ws.returncode}"
            break
        now = time.monotonic()
        if now >= next_sample:
            next_sample += a.sample_every
            rss, fds = proc_sample(ws.pid)
            files, size = dir_stats(replica)
            samples.append((now - start, rss, fds, files, size))
            if csv:
                csv.write(f"{now - start:.0f},{rss},{fds},{files},{size}\n")
                csv.flush()
        if now >= next_restore:
            next_restore += a.restore_every
            out = os.path.join(work, "restore", "restored.db")
            shutil.rmtree(os.path.dirname(out), ignore_errors=True)
            r = subprocess.run([a.walship, "restore", "-o", out, "file://" + replica],
                               capture_output=True, text=True, timeout=600)
            with writer.lock:
                head, committed = writer.n, set(writer.committed)
            if r.returncode != 0:
                err = f"restore failed: {r.stderr.strip()[-300:]}"
                n = None
            else:
                n, err = check_db(out)
                if err is None and n not in committed:
                    err = f"restored N={n} was never committed"
            restores.append((now - start, n, None if n is None else head - n, err))
            print(f"  {now - start:7.0f}s restore: N={n} lag={None if n is None else head - n} ids "
                  f"{'OK' if err is None else 'FAIL: ' + err}", flush=True)
    writer.stop.set()
    writer.join()
    # Final: SIGTERM runs a last sync; the restore must equal the source exactly.
    if ws.poll() is None:
        ws.send_signal(signal.SIGTERM)
        try:
            ws.wait(timeout=60)
        except subprocess.TimeoutExpired:
            ws.kill()
            failed = failed or "walship did not exit within 60 s of SIGTERM"
    if ws.returncode != 0 and failed is None:
        failed = f"walship exited with {ws.returncode} after SIGTERM"
    final_ok = False
    src_n, src_err = check_db(db)
    out = os.path.join(work, "final", "restored.db")
    shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    r = subprocess.run([a.walship, "restore", "-o", out, "file://" + replica],
                       capture_output=True, text=True, timeout=600)
    if r.returncode == 0:
        n, err = check_db(out)
        final_ok = err is None and src_err is None and n == src_n
        if not final_ok:
            failed = failed or f"final restore N={n} ({err}), source N={src_n} ({src_err})"
    else:
        failed = failed or f"final restore failed: {r.stderr.strip()[-300:]}"

    dur = time.monotonic() - start
    ok = [x for x in restores if x[3] is None]
    bad = [x for x in restores if x[3] is not None]
    lags = [x[2] for x in ok]

    def fmt_kib(k):
        return f"{k / 1024:.1f} MiB"

    rows = [
        ("duration", f"{dur / 60:.1f} min"),
        ("writer commits", f"{writer.commits} ({writer.commits / dur:.1f}/s), final N={src_n}, errors {writer.errors}"),
        ("restores", f"{len(restores)} periodic + 1 final"),
        ("all identical?", "yes" if not bad and final_ok else f"NO ({len(bad)} bad, final ok: {final_ok})"),
        ("restore lag (ids)", f"min {min(lags)} / max {max(lags)}" if lags else "-"),
    ]
    if samples:
        rss = [x[1] for x in samples]
        fds = [x[2] for x in samples]
        rows += [
            ("samples", f"{len(samples)}, every {a.sample_every:.0f} s"),
            ("RSS first/last/max", f"{fmt_kib(rss[0])} / {fmt_kib(rss[-1])} / {fmt_kib(max(rss))}"),
            ("fds first/last/max", f"{fds[0]} / {fds[-1]} / {max(fds)}"),
            ("replica files first/last/max", f"{samples[0][3]} / {samples[-1][3]} / {max(x[3] for x in samples)}"),
            ("replica MiB first/last/max", f"{samples[0][4] / 2**20:.1f} / {samples[-1][4] / 2**20:.1f} / {max(x[4] for x in samples) / 2**20:.1f}"),
        ]
    print("\nsoak summary")
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
    for t, n, lag, err in bad[:5]:
        print(f"  FAILED restore at {t:.0f}s: {err}")
    if failed:
        print(f"  FAILED: {failed}")
        print(f"  kept {work}")
        return 1
    if not a.dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
