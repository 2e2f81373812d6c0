#!/usr/bin/env python3
"""A model of upload scheduling: what lag p99 a policy can reach for a given upload budget.

    python3 benches/lag_model.py [--seeds 30]

#16 asks for lag p99 <= 100 ms at `sync-interval: 100ms` with one commit every 50 ms
(compare.py scenario 3), and suggested starting the next upload as soon as the previous
one ends when frames are waiting, "within the interval's budget". This script simulates a
writer and an uploader, with no real I/O, to show which schedules can meet that and what
they cost in uploads (requests, the object-store bill). The parameters come from
measurements on this machine: a commit takes 0.3-3 ms after its due time (Python's
sqlite3, WAL, synchronous=FULL), walship notices it 0.3 ms later (inotify), an upload to a
file replica takes 2-5 ms from its start until the segment is visible (the copy, LZ4,
write, fsync, rename), a timer that slept fires up to 1 ms late.

Policies:
- gap: walship today. An upload starts when frames wait and the last one started at least
  an interval ago.
- bucket-N: a token bucket (GCRA) with a refill of one upload per interval and room for N:
  the "start as soon as the previous one ends" reading, N uploads back to back at most.
- deadline: gap, but the upload may start early by the expected upload time (at most a
  tenth of the interval), so that the oldest waiting commit is visible one interval after it
  was noticed.
- half-gap: uploads at most every half interval: twice the budget, for comparison.

Writers: `periodic` is compare.py's (one commit every 50 ms, on a fixed clock), `poisson`
the same rate at random times, `sparse` three commits a second at random with
`sync-interval: 1s`.
"""
import argparse
import random
import statistics


def simulate(policy, seed, writer, T=60.0, iv=0.1, period=0.05):
    rnd = random.Random(seed)
    if writer == "periodic":
        phase = rnd.uniform(0, period)
        commits = [phase + i * period + rnd.uniform(0.0003, 0.003) for i in range(int(T / period))]
    else:
        commits, x = [], 0.0
        while x < T:
            x += rnd.expovariate(1 / period)
            commits.append(x)
    notice = 0.0003
    t, last, tat, i = 0.0, -1e9, 0.0, 0
    est = 0.004  # running estimate of an upload's duration (deadline policy)
    lags, uploads, pending = [], 0, []
    while i < len(commits) or pending:
        if not pending:
            t = max(t, commits[i] + notice)
        while i < len(commits) and commits[i] + notice <= t:
            pending.append(commits[i])
            i += 1
        if policy == "gap":
            due = last + iv
        elif policy == "half-gap":
            due = last + iv / 2
        elif policy.startswith("bucket-"):
            due = tat - (int(policy.split("-")[1]) - 1) * iv
        elif policy == "deadline":
            due = min(last + iv, pending[0] + notice + iv - min(est, iv / 10))
        else:
            raise SystemExit(f"unknown policy {policy}")
        start = max(t, due)
        if start > t:
            start += rnd.uniform(0, 0.001)  # a timer fires late
        while i < len(commits) and commits[i] + notice <= start:
            pending.append(commits[i])
            i += 1
        took = rnd.uniform(0.002, 0.005)
        est = 0.8 * est + 0.2 * took
        lags.extend((start + took - c) * 1000 for c in pending)
        pending = []
        uploads += 1
        last = start
        tat = max(tat, start) + iv
        t = start + took
    lags.sort()
    return lags[len(lags) // 2], lags[int(len(lags) * 0.99)], uploads / T


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=30, help="runs per cell (each a random phase)")
    a = ap.parse_args()
    cases = [("periodic", dict(iv=0.1, period=0.05)), ("poisson", dict(iv=0.1, period=0.05)),
             ("sparse", dict(iv=1.0, period=1 / 3, T=600.0))]
    print("| writer | sync-interval | policy | lag p50 (ms) | lag p99 (ms), median of runs [min, max] | uploads/s |")
    print("|---|---|---|---|---|---|")
    for writer, kw in cases:
        for policy in ("gap", "bucket-2", "bucket-3", "deadline", "half-gap"):
            runs = [simulate(policy, s, "periodic" if writer == "periodic" else "poisson", **kw)
                    for s in range(a.seeds)]
            p99 = sorted(r[1] for r in runs)
            print(f"| {writer} | {kw['iv'] * 1000:.0f} ms | {policy} | {statistics.median(r[0] for r in runs):.1f} | "
                  f"{statistics.median(p99):.1f} [{p99[0]:.1f}, {p99[-1]:.1f}] | "
                  f"{statistics.median(r[2] for r in runs):.2f} |")


if __name__ == "__main__":
    main()
