#!/usr/bin/env bash
# Sees walship work end to end with no server: builds it, creates ./data/app.db, runs
# `walship replicate -config config-examples/quickstart.yml` (a file replica in
# ./data/replica) while an application writes, stops it with SIGTERM (final sync), then
# lists the replica and restores it to ./data/restored.db and compares.
# Run from the repository root: bash config-examples/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo build --release (the first build compiles ~300 crates: a few minutes)"
cargo build --release
bin=target/release/walship
rm -rf data && mkdir -p data

python3 - <<'PY'
import sqlite3
c = sqlite3.connect("data/app.db")
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT, at TEXT DEFAULT CURRENT_TIMESTAMP)")
c.commit()
PY

echo "== walship replicate -config config-examples/quickstart.yml"
"$bin" replicate -config config-examples/quickstart.yml &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT

echo "== the application writes 200 rows over ~2 seconds"
python3 - <<'PY'
import sqlite3, time
c = sqlite3.connect("data/app.db")
for i in range(200):
    c.execute("INSERT INTO notes(body) VALUES (?)", (f"note {i} " + "x" * 500,))
    c.commit()
    time.sleep(0.01)
PY
sleep 1.5
kill -TERM "$pid"
wait "$pid"
trap - EXIT

echo "== walship generations / snapshots / wal"
"$bin" generations -config config-examples/quickstart.yml data/app.db
"$bin" snapshots -config config-examples/quickstart.yml data/app.db
"$bin" wal -config config-examples/quickstart.yml data/app.db >data/wal.txt
head -5 data/wal.txt
echo "(the first 4 of $(($(wc -l <data/wal.txt) - 1)) WAL segments; all of them in data/wal.txt)"

echo "== walship restore -o data/restored.db data/replica"
"$bin" restore -o data/restored.db data/replica
python3 - <<'PY'
import sqlite3
a = sqlite3.connect("data/app.db").execute("SELECT id, body FROM notes ORDER BY id").fetchall()
b = sqlite3.connect("data/restored.db").execute("SELECT id, body FROM notes ORDER BY id").fetchall()
ok = sqlite3.connect("data/restored.db").execute("PRAGMA integrity_check").fetchone()[0]
print(f"source rows: {len(a)}, restored rows: {len(b)}, identical: {a == b}, integrity_check: {ok}")
raise SystemExit(0 if a == b and ok == "ok" else 1)
PY
