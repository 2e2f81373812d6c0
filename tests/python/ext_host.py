"""A Python service with walship inside, for tests/extension.rs: the roles a test starts as
separate processes. Every role prints JSON (or `ack N` lines) on stdout.

    ext_host.py service DB URL N [--module pysqlite3] [--wait-for FILE]
    ext_host.py writer DB N
    ext_host.py setup DB
    ext_host.py dump DB
    ext_host.py checkpoint DB
    ext_host.py locks DB URL [pysqlite3]
    ext_host.py bad-input DIR
    ext_host.py fork DB URL
    ext_host.py asyncio DB URL TASKS ROUNDS
    ext_host.py no-stop DB URL N
"""

import importlib
import json
import os
import sys
import time

import sqlite_vec
import walship

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs(id INTEGER PRIMARY KEY, writer TEXT NOT NULL, body TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS vecs USING vec0(embedding float[8]);
"""


def connect(db, module="sqlite3"):
    sqlite = importlib.import_module("pysqlite3.dbapi2" if module == "pysqlite3" else "sqlite3")
    conn = sqlite.connect(db, isolation_level=None, timeout=10)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    return conn


def setup(db, module="sqlite3"):
    conn = connect(db, module)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(SCHEMA)
    return conn


def insert(conn, writer, i):
    """One transaction: a document and its vector, as the service writes them."""
    conn.execute("BEGIN IMMEDIATE")
    cur = conn.execute("INSERT INTO docs(writer, body) VALUES (?, ?)", (writer, f"{writer}-{i}-" + "x" * (i % 300)))
    rowid = cur.lastrowid
    vec = [float((rowid * 7 + k) % 13) for k in range(8)]
    conn.execute("INSERT INTO vecs(rowid, embedding) VALUES (?, ?)", (rowid, sqlite_vec.serialize_float32(vec)))
    conn.execute("COMMIT")
    return rowid


def service(db, url, n, module="sqlite3", wait_for=None):
    conn = setup(db, module)
    handle = walship.replicate(conn, replica=url)
    i = 0
    while n < 0 or i < n:
        rowid = insert(conn, "service", i)
        handle.wait_durable(timeout=20)
        # Only now would the service answer its client.
        print(f"ack {rowid}", flush=True)
        i += 1
    if wait_for:
        while not os.path.exists(wait_for):
            time.sleep(0.05)
    handle.wait_durable(timeout=20)
    status = handle.status()
    handle.stop()
    print(json.dumps({"stopped": True, "status": status}), flush=True)


def writer(db, n):
    conn = connect(db)
    for i in range(n):
        insert(conn, f"writer{os.getpid()}", i)
        time.sleep(0.002)
    print(json.dumps({"written": n}), flush=True)


def dump(db):
    conn = connect(db)
    docs = conn.execute("SELECT id, writer, body FROM docs ORDER BY id").fetchall()
    vecs = conn.execute("SELECT rowid, vec_to_json(embedding) FROM vecs ORDER BY rowid").fetchall()
    print(json.dumps({
        "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
        "ids": [d[0] for d in docs],
        "docs": docs,
        "vecs": vecs,
    }), flush=True)


def checkpoint(db):
    """What another process of the application does: a checkpoint that resets the WAL."""
    import sqlite3
    conn = sqlite3.connect(db, isolation_level=None)
    print(json.dumps(conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()), flush=True)


def other_process_checkpoint(db):
    import subprocess
    out = subprocess.run([sys.executable, __file__, "checkpoint", db], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def locks(db, url, module="sqlite3"):
    """The host holds a read transaction throughout; another process's TRUNCATE checkpoint
    must find it busy (not reset the WAL) before, while and after walship runs in this
    process. The control phases drop the host's lock the two ways a process can: a second
    SQLite copy in the process opens and closes the database (pysqlite3 hosts: the stdlib
    sqlite3 module is that second copy), and a plain descriptor of the -shm is opened and
    closed (POSIX drops every lock of the process on a file when any descriptor of it is
    closed; a WAL reader's lock is a read-mark in the -shm). Each time the same checkpoint
    must then reset the WAL: the check can fail."""
    app = setup(db, module)
    insert(app, "app", 0)
    reader = connect(db, module)
    reader.execute("BEGIN")
    seen = reader.execute("SELECT count(*) FROM docs").fetchone()[0]
    writer = connect(db, module)
    result = {"seen": seen}
    for i in range(20):
        insert(writer, "app", i + 1)  # the WAL grows past the reader's snapshot
    result["before"] = other_process_checkpoint(db)
    handle = walship.replicate(app, replica=url)
    for i in range(20):
        insert(writer, "app", 100 + i)
    handle.wait_durable(timeout=20)
    result["during"] = other_process_checkpoint(db)
    handle.stop()
    result["after_stop"] = other_process_checkpoint(db)
    result["reader_still_sees"] = reader.execute("SELECT count(*) FROM docs").fetchone()[0]
    if module == "pysqlite3":
        import sqlite3 as second_copy
        c = second_copy.connect(db)
        result["second_copy_read"] = c.execute("SELECT count(*) FROM docs").fetchone()[0]
        c.close()
        result["after_second_copy"] = other_process_checkpoint(db)
    else:
        fd = os.open(db + "-shm", os.O_RDONLY)
        os.close(fd)
        result["after_close_fd"] = other_process_checkpoint(db)
    reader.execute("COMMIT")
    print(json.dumps(result), flush=True)


def attempt(fn):
    try:
        return {"ok": fn()}
    except walship.WalshipError as e:
        return {"error": str(e)}


def bad_input(d):
    out = {}
    db = os.path.join(d, "app.db")
    conn = setup(db)
    insert(conn, "app", 0)
    out["config_missing"] = attempt(lambda: walship.replicate(conn, config=os.path.join(d, "nope.yml")).databases)
    bad = os.path.join(d, "bad.yml")
    with open(bad, "w") as f:
        f.write("dbs:\n  - path: [this is not a path\n")
    out["config_invalid"] = attempt(lambda: walship.replicate(conn, config=bad).databases)
    execc = os.path.join(d, "exec.yml")
    with open(execc, "w") as f:
        f.write(f"exec: sleep 1\ndbs:\n  - path: {db}\n    replicas:\n      - url: file://{d}/exec-replica\n")
    out["config_exec"] = attempt(lambda: walship.replicate(conn, config=execc).databases)
    rollback = os.path.join(d, "rollback.db")
    rb = connect(rollback)
    rb.execute("CREATE TABLE t(x)")
    out["not_wal"] = attempt(lambda: walship.replicate(rb, replica=f"file://{d}/rollback-replica").databases)
    out["not_wal_replica_exists"] = os.path.exists(os.path.join(d, "rollback-replica"))
    out["bad_url"] = attempt(lambda: walship.replicate(conn, replica="nosuch://x/y").databases)
    first = walship.replicate(conn, replica=f"file://{d}/replica")
    out["second_start"] = attempt(lambda: walship.replicate(conn, replica=f"file://{d}/replica2").databases)
    out["second_start_replica_exists"] = os.path.exists(os.path.join(d, "replica2"))
    other = connect(db)
    walship.load(other)
    out["second_start_sql"] = attempt(lambda: walship._call(other, "SELECT walship_replicate(?)", f"file://{d}/replica3"))
    first.stop()
    out["stopped_twice"] = attempt(lambda: first.stop())
    out["wait_bad_timeout"] = attempt(lambda: walship._call(other, "SELECT walship_wait_durable(-5)"))
    out["follow"] = attempt(lambda: walship._call(other, "SELECT walship_follow(?)", f"file://{d}/replica"))
    restored = os.path.join(d, "restored.db")
    out["restore"] = attempt(lambda: json.loads(walship._call(other, "SELECT walship_restore(?, ?)", f"file://{d}/replica", restored)))
    out["restored_rows"] = connect(restored).execute("SELECT count(*) FROM docs").fetchone()[0]
    out["restore_existing"] = attempt(lambda: walship._call(other, "SELECT walship_restore(?, ?)", f"file://{d}/replica", restored))
    mem = connect(":memory:")
    walship.load(mem)
    out["in_memory"] = attempt(lambda: walship._call(mem, "SELECT walship_replicate('file:///tmp/x')"))
    print(json.dumps(out), flush=True)


def fork(db, url):
    conn = setup(db)
    handle = walship.replicate(conn, replica=url)
    insert(conn, "app", 0)
    handle.wait_durable(timeout=20)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        child = {"wait": attempt(lambda: handle.wait_durable(timeout=2))}
        c = connect(db)
        walship.load(c)
        child["status_sql"] = attempt(lambda: walship._call(c, "SELECT walship_status()"))
        child["start_sql"] = attempt(lambda: walship._call(c, "SELECT walship_replicate(?)", url + "-child"))
        os.write(w, json.dumps(child).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.waitpid(pid, 0)
    insert(conn, "app", 1)
    parent = attempt(lambda: handle.wait_durable(timeout=20))
    handle.stop()
    print(json.dumps({"child": json.loads(data), "parent_wait": parent}), flush=True)


def asyncio_service(db, url, tasks, rounds):
    """An asyncio service: each request commits on the service's connection, then awaits
    `wait_durable_async` (on a worker thread) before it answers; requests run
    concurrently."""
    import asyncio

    conn = setup(db)
    handle = walship.replicate(conn, replica=url)
    acks = []

    async def request(t):
        for r in range(rounds):
            rowid = insert(conn, f"task{t}", r)
            await handle.wait_durable_async(timeout=20)
            acks.append(rowid)

    async def run():
        started = time.monotonic()
        await asyncio.gather(*(request(t) for t in range(tasks)))
        return time.monotonic() - started

    elapsed = asyncio.run(run())
    handle.stop()
    print(json.dumps({"acks": sorted(acks), "elapsed": elapsed}), flush=True)


def main():
    role, args = sys.argv[1], sys.argv[2:]
    if role == "service":
        module = "sqlite3"
        wait_for = None
        if "--module" in args:
            i = args.index("--module")
            module = args[i + 1]
            del args[i:i + 2]
        if "--wait-for" in args:
            i = args.index("--wait-for")
            wait_for = args[i + 1]
            del args[i:i + 2]
        service(args[0], args[1], int(args[2]), module, wait_for)
    elif role == "writer":
        writer(args[0], int(args[1]))
    elif role == "setup":
        setup(args[0]).close()
    elif role == "dump":
        dump(args[0])
    elif role == "checkpoint":
        checkpoint(args[0])
    elif role == "locks":
        locks(*args)
    elif role == "bad-input":
        bad_input(args[0])
    elif role == "no-stop":
        conn = setup(args[0])
        walship.replicate(conn, replica=args[1])
        for i in range(int(args[2])):
            insert(conn, "app", i)
        print(json.dumps({"written": int(args[2])}), flush=True)
        # No stop(), no wait: the interpreter's exit runs the final sync.
    elif role == "asyncio":
        asyncio_service(args[0], args[1], int(args[2]), int(args[3]))
    elif role == "fork":
        fork(args[0], args[1])
    else:
        sys.exit(f"unknown role {role}")


if __name__ == "__main__":
    main()
