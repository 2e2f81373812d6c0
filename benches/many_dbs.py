#!/usr/bin/env python3
"""Many databases in one `walship replicate`: start-up, idle CPU and memory, idle writes to
the replicas, and a write burst across all databases.

    cargo build --release && python3 benches/many_dbs.py [N] [IDLE_SECONDS]

(default N=100, IDLE_SECONDS=30; the issue's full size is N=1000). Uses file replicas in a
temporary directory. CPU comes from /proc/PID/stat (user+sys ticks), RSS from
/proc/PID/status. Prints one line per measure.
"""
import os, sqlite3, subprocess, sys, tempfile, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100
IDLE = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "walship")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def replica_files(root):
    return sum(len(files) for _, _, files in os.walk(root))


def main():
    tmp = tempfile.mkdtemp(prefix="walship-many-")
    dbs = []
    cfg = ["dbs:"]
    for i in range(N):
        p = os.path.join(tmp, f"db{i:04}.db")
        c = sqlite3.connect(p)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO t(v) VALUES ('seed')")
        c.commit()
        dbs.append((p, c))
        cfg += [f"  - path: {p}", "    replicas:", f"      - path: {tmp}/replicas/db{i:04}"]
    open(os.path.join(tmp, "cfg.yml"), "w").write("\n".join(cfg) + "\n")
    log = open(os.path.join(tmp, "walship.log"), "w")
    t0 = time.monotonic()
    proc = subprocess.Popen([BIN, "replicate", "-config", os.path.join(tmp, "cfg.yml")], stderr=log)
    # Start-up: until every database has a snapshot on its replica.
    while True:
        done = sum(
            1
            for i in range(N)
            if os.path.isdir(os.path.join(tmp, "replicas", f"db{i:04}", "generations"))
            and any("snapshot" in f for _, _, fs in os.walk(os.path.join(tmp, "replicas", f"db{i:04}")) for f in fs)
        )
        if done == N:
            break
        if time.monotonic() - t0 > 300:
            sys.exit(f"start-up did not finish: {done}/{N}")
        time.sleep(0.05)
    startup = time.monotonic() - t0
    print(f"databases: {N}")
    print(f"start-up until every replica has its snapshot: {startup:.2f} s")
    time.sleep(3)  # let the first WAL segments settle
    files0 = replica_files(os.path.join(tmp, "replicas"))
    c0 = cpu_seconds(proc.pid)
    time.sleep(IDLE)
    c1 = cpu_seconds(proc.pid)
    files1 = replica_files(os.path.join(tmp, "replicas"))
    print(f"idle {IDLE:.0f} s: CPU {100 * (c1 - c0) / IDLE:.2f}% of one core, RSS {rss_mb(proc.pid):.1f} MB, "
          f"replica objects written while idle: {files1 - files0}")
    # Burst: one transaction in every database, then wait until every replica has it.
    before = replica_files(os.path.join(tmp, "replicas"))
    t1 = time.monotonic()
    for p, c in dbs:
        c.execute("INSERT INTO t(v) VALUES ('burst')")
        c.commit()
    while replica_files(os.path.join(tmp, "replicas")) < before + N:
        if time.monotonic() - t1 > 120:
            break
        time.sleep(0.02)
    print(f"burst of 1 transaction in each of {N} databases: on every replica after {time.monotonic() - t1:.2f} s; "
          f"RSS {rss_mb(proc.pid):.1f} MB")
    proc.terminate()
    rc = proc.wait(timeout=120)
    print(f"walship exit code after SIGTERM: {rc}")


if __name__ == "__main__":
    main()
