#!/usr/bin/env python3
"""A TCP proxy that caps the bandwidth of EACH connection, as object stores do.

    python3 benches/capproxy.py --upstream 127.0.0.1:PORT --rate-mbps 8 [--port 0] [--stats FILE]

Listens on 127.0.0.1 (`--port`, 0 = any free port; the port is printed on stdout as
`PORT <n>` once listening), forwards every connection to `--upstream`, and paces each
direction of each connection to `--rate-mbps` MB/s (10^6 bytes) on its own: one connection
never goes faster than the cap, N connections together up to N times it. The pacing is a
token bucket with a burst of 256 KiB, so a connection that waited (between requests) does
not then run far above the cap. On SIGTERM, and every second while `--stats` is given, it
writes {"connections": n, "bytes_down": n, "bytes_up": n, "max_open": n} to that file.
Python 3.11 standard library only; used by compare.py scenario 7.
"""
import argparse
import asyncio
import json
import os
import signal
import time

BURST = 256 << 10
READ = 64 << 10

STATS = dict(connections=0, open=0, max_open=0, bytes_down=0, bytes_up=0)


class Bucket:
    """Token bucket: `take(n)` waits until n bytes may pass at `rate` bytes/s."""

    def __init__(self, rate):
        self.rate = rate
        self.tokens = BURST
        self.t = time.monotonic()

    async def take(self, n):
        now = time.monotonic()
        self.tokens = min(BURST, self.tokens + (now - self.t) * self.rate)
        self.t = now
        self.tokens -= n
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


async def pipe(reader, writer, rate, key):
    bucket = Bucket(rate)
    try:
        while True:
            data = await reader.read(READ)
            if not data:
                break
            await bucket.take(len(data))
            writer.write(data)
            STATS[key] += len(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(client_r, client_w, upstream, rate):
    STATS["connections"] += 1
    STATS["open"] += 1
    STATS["max_open"] = max(STATS["max_open"], STATS["open"])
    try:
        host, port = upstream
        try:
            server_r, server_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, server_w, rate, "bytes_up"),
                             pipe(server_r, client_w, rate, "bytes_down"))
    finally:
        STATS["open"] -= 1


def write_stats(path):
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({k: v for k, v in STATS.items() if k != "open"}, f)
        os.replace(tmp, path)


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--rate-mbps", type=float, required=True, help="cap of each connection, each direction, MB/s")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--stats", default=None, help="file to write the counters to")
    args = ap.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    rate = args.rate_mbps * 1e6
    server = await asyncio.start_server(lambda r, w: handle(r, w, (host, int(port)), rate), "127.0.0.1", args.port)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1)
        except asyncio.TimeoutError:
            pass
        write_stats(args.stats)
    server.close()
    write_stats(args.stats)


if __name__ == "__main__":
    asyncio.run(main())
