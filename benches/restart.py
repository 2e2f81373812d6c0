#!/usr/bin/env python3
"""What a restart of the replicator costs (#16): one database of SIZE_MB, replicated to a
file replica; the replicator is stopped with SIGTERM, the application closes after it (its
last connection checkpoints and deletes the -wal file, as when a service manager stops
both), the application reopens and commits once, and the replicator starts again. Prints,
per tool, the bytes the replica gained across the restart, whether a new generation (a full
snapshot) was started; then checks that a restore holds the commit made after the restart.

    cargo build --release && python3 benches/restart.py [--mb 200] [--tools walship,litestream]

TOOLS as in compare.py (walship = target/release/walship or $WALSHIP_BIN, litestream =
$LITESTREAM_BIN, litestream05 = $LITESTREAM05_BIN); a tool may also be given as
NAME=PATH to run another walship binary under that name.
"""
import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as C  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--mb", type=int, default=200)
ap.add_argument("--tools", default="walship,litestream")
ap.add_argument("--tmpdir", default=None)
a = ap.parse_args()
C.POOL = C.text_pool()


def generations(rep):
    d = os.path.join(rep, "generations")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def replicated(tool, bin_path, cfg, db, want):
    """True when a restore of the replica holds `want` rows."""
    out = tempfile.mktemp(suffix=".db")
    r = subprocess.run([bin_path, "restore", "-config", cfg, "-o", out, db],
                       capture_output=True, text=True)
    try:
        if r.returncode != 0:
            return False
        n = sqlite3.connect(out).execute("SELECT count(*) FROM t").fetchone()[0]
        return n == want
    finally:
        for sfx in ("", "-wal", "-shm"):
            try:
                os.remove(out + sfx)
            except FileNotFoundError:
                pass


rows = []
for spec in a.tools.split(","):
    name, _, path = spec.partition("=")
    tool = "walship" if path else name
    if path:
        os.environ["WALSHIP_BIN"] = path
    bin_path = C.bin_for(tool)
    work = tempfile.mkdtemp(prefix=f"restart-{name}-", dir=a.tmpdir)
    db, rep, cfg = os.path.join(work, "db.sqlite"), os.path.join(work, "replica"), os.path.join(work, "cfg.yml")
    C.new_db(db)
    C.write_txs(db, a.mb * 100, rows_per_tx=10)  # ~10 KB per transaction
    C.write_config(cfg, [(db, rep)])
    app = C.connect(db)
    want = app.execute("SELECT count(*) FROM t").fetchone()[0]
    r = C.Replicator(tool, cfg, os.path.join(work, "log1.txt"))
    r.wait_ready([rep])
    while not replicated(tool, bin_path, cfg, db, want):
        time.sleep(0.5)
    r.stop()
    app.close()  # the application closes last: SQLite checkpoints and deletes the -wal
    wal_gone = not os.path.exists(db + "-wal")
    before, gens0 = C.tree_bytes(rep), generations(rep)
    app = C.connect(db)
    app.execute("INSERT INTO t(v) VALUES ('after restart')")
    want += 1
    r = C.Replicator(tool, cfg, os.path.join(work, "log2.txt"))
    # Until the replica has stopped growing for 3 s (a new generation's snapshot takes a
    # while), then one restore must hold the new commit.
    last, still = -1, 0.0
    while still < 3.0:
        time.sleep(0.25)
        b = C.tree_bytes(rep)
        still = still + 0.25 if b == last else 0.0
        last = b
    r.stop()
    app.close()
    ok = replicated(tool, bin_path, cfg, db, want)
    gained = C.tree_bytes(rep) - before
    new_gen = generations(rep) != gens0
    db_mb = os.path.getsize(db) / 1e6
    rows.append((name, db_mb, new_gen, gained, ok))
    print(f"{name}: db {db_mb:.0f} MB, -wal deleted by the application's close: {wal_gone}, "
          f"new generation: {new_gen}, replica gained {gained / 1e3:.1f} KB, restore holds the new commit: {ok}",
          flush=True)
    shutil.rmtree(work, ignore_errors=True)

print()
print("| tool | database (MB) | new generation after the restart | replica bytes added by the restart | restore holds the commit made after it |")
print("|---|---|---|---|---|")
for name, db_mb, new_gen, gained, ok in rows:
    size = f"{gained / 1e6:.1f} MB" if gained >= 1e6 else f"{gained / 1e3:.1f} KB"
    print(f"| {name} | {db_mb:.0f} | {'yes' if new_gen else 'no'} | {size} | {'yes' if ok else 'NO'} |")
