#!/usr/bin/env python3
"""One replicator, one database, 20 commits a second: the replicator's CPU (% of a core,
/proc ticks) over the run. For profiling the steady state (#16) without the comparison
harness around it; the replicator's pid is written to /tmp/steady20-TOOL/pid so that
`perf record -p` or `strace -c -f -p` can attach.

    cargo build --release && python3 benches/steady20.py walship 30 [--sync 1s] [--scan]

TOOL is walship or litestream (as in compare.py: $LITESTREAM_BIN). --scan also scans the
replica directory every 10 ms, as compare.py's lag scenario does.
"""
import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as C  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("tool")
ap.add_argument("seconds", type=float)
ap.add_argument("--sync", default="1s")
ap.add_argument("--scan", action="store_true")
a = ap.parse_args()
C.POOL = C.text_pool()
d = f"/tmp/steady20-{a.tool}"
shutil.rmtree(d, ignore_errors=True)
os.makedirs(d)
db, rep = d + "/db.sqlite", d + "/replica"
C.new_db(db)
cfg = d + "/cfg.yml"
C.write_config(cfg, [(db, rep)], sync=a.sync, monitor=a.sync)
r = C.Replicator(a.tool, cfg, d + "/log.txt")
r.wait_ready([rep])
time.sleep(1.5)
open(d + "/pid", "w").write(str(r.pid))
print("pid", r.pid, flush=True)
if a.scan:
    C.Poller(rep).start()
c = C.connect(db)
t0, c0, i = time.monotonic(), r.cpu(), 0
while time.monotonic() - t0 < a.seconds:
    due = t0 + i * 0.05
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    c.execute("INSERT INTO t(v) VALUES (?)", (C.POOL[i % len(C.POOL)][:100],))
    i += 1
el = time.monotonic() - t0
print(f"{a.tool}: {i} commits in {el:.1f}s, CPU {100 * (r.cpu() - c0) / el:.3f}% of a core", flush=True)
r.stop()
