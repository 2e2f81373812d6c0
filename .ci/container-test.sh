#!/usr/bin/env bash
# Builds the sidecar container image (config-examples/Containerfile.scratch: a static musl
# walship FROM scratch, plus CA certificates) and tests it the way a user runs it:
#
#   1. cargo build --profile dist --target x86_64-unknown-linux-musl (static-pie; the bundled
#      SQLite and aws-lc-sys build with musl-tools' x86_64-linux-musl-gcc, which cc-rs picks by
#      itself: no CC_* variable, no cmake);
#   2. podman build of a small context (binary, CA bundle, empty /tmp, Containerfile) into
#      localhost/walship:test;
#   3. round trip: the host's python3 writes a WAL-mode database in a host directory, which a
#      walship container (`replicate -config /etc/litestream.yml`) reads as the volume /data and
#      replicates to a file replica inside that same volume; `podman stop -t 30` (SIGTERM: a last
#      sync, exit code 0, checked with podman inspect); `restore` with the same image; every row
#      and PRAGMA integrity_check are checked on the host.
#   Containers get --network=none: a file replica needs no network.
#
#   bash .ci/container-test.sh
#   MUSL_TARGET_DIR=/somewhere bash .ci/container-test.sh   # cargo target dir (default target/musl)
#   KEEP_IMAGE=1 bash .ci/container-test.sh                 # keep localhost/walship:test
#   PODMAN_RUNTIME=crun bash .ci/container-test.sh          # force an OCI runtime (see below)
#
# Needs root (rootful podman) and Debian's packages podman, runc and musl-tools, and the rustup
# target x86_64-unknown-linux-musl: installed here when missing, as .ci/run installs its own.
#
# Traps met on the walship VM (Firecracker, cgroup v1 + v2 "hybrid", root without
# CAP_SYS_RESOURCE, no systemd), each handled by probing below rather than by editing
# /etc/containers:
#   - crun 1.8 (Debian's default runtime) refuses every container: "cgroups in hybrid mode not
#     supported, drop all controllers from cgroupv2" (the v2 mount holds hugetlb), even with
#     --cgroups=disabled. runc 1.1 runs them.
#   - podman asks for RLIMIT_NOFILE/NPROC = 1048576 by default, and root here cannot raise a hard
#     limit: "setrlimit `RLIMIT_NOFILE`: Operation not permitted". --ulimit host does not help;
#     explicit --ulimit nofile=H:H --ulimit nproc=P:P at or under the limits podman's conmon
#     inherits does (nproc capped at kernel.pid_max: 96367 failed, 32768 works here).
#   - cgroupfs and the file events logger are podman's own choices without systemd; the overlay
#     storage driver works on ext4 (native diff), no fuse-overlayfs or vfs needed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
export CARGO_TERM_COLOR=never
target=x86_64-unknown-linux-musl
target_dir="${MUSL_TARGET_DIR:-target/musl}"
# dist is what a release ships; .ci/run uses dev (MUSL_PROFILE=dev): the same code, built in
# a third of the time, since the image is tested here, not shipped.
profile="${MUSL_PROFILE:-dist}"
image=localhost/walship:test
name="walship-ct-$$"

section() { printf '\n==== %s ==== (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

section "tools"
need_apt=()
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
command -v x86_64-linux-musl-gcc >/dev/null 2>&1 || need_apt+=(musl-tools)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need_apt+=(ca-certificates)
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "installing: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
podman --version
python3 -c 'import sqlite3; print("host sqlite", sqlite3.sqlite_version)'

# Temporary files: the image's build context, the shared volume, the config.
work="$(mktemp -d /tmp/walship-container.XXXXXX)"
cleanup() {
    local rc=$?
    # One name per call: podman 4.3's `rm -f A B` with A already gone removes nothing.
    local c
    for c in "$name" "$name-restore" "$name-list"; do
        podman rm -f -i -t 0 "$c" >/dev/null 2>&1 || true
    done
    if [ -z "${KEEP_IMAGE:-}" ]; then podman rmi -f "$image" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

section "static binary ($target, profile $profile)"
t0="$(now)"
CARGO_TARGET_DIR="$target_dir" cargo build --profile "$profile" --locked --bin walship --target "$target"
bin="$target_dir/$target/$([ "$profile" = dev ] && echo debug || echo "$profile")/walship"
build_secs="$(since "$t0")"
# Static: no program interpreter and no NEEDED libraries (a static-pie still has a dynamic
# section, so `file` says "static-pie linked" and ldd "statically linked").
if readelf -lW "$bin" | grep -q 'program interpreter' || readelf -dW "$bin" | grep -q NEEDED; then
    echo "error: $bin is not static" >&2
    readelf -lW "$bin" | grep interpreter >&2 || true
    readelf -dW "$bin" | grep NEEDED >&2 || true
    exit 1
fi
"$bin" --version
echo "static binary: $(stat -c %s "$bin") bytes, built in ${build_secs}s"

section "image $image"
ctx="$work/context"
mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/tmp"
cp "$bin" "$ctx/walship"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
cp "$repo/config-examples/Containerfile.scratch" "$ctx/Containerfile"
t0="$(now)"
podman build -q -f "$ctx/Containerfile" -t "$image" "$ctx"
image_secs="$(since "$t0")"
image_bytes="$(podman image inspect -f '{{.Size}}' "$image")"
echo "image: $image_bytes bytes, built in ${image_secs}s"
# What is in it (a created container's file system, exported as a tar): the binary, the CA
# bundle and a sticky world-writable /tmp.
podman create --name "$name-list" "$image" >/dev/null
listing="$(podman export "$name-list" | tar -tvf -)"
podman rm "$name-list" >/dev/null
echo "$listing" | grep -E ' (walship|etc/ssl/certs/ca-certificates.crt|tmp/)$'
echo "$listing" | grep -qE '^-rwxr-xr-x .* walship$' || { echo "error: no executable /walship in the image" >&2; exit 1; }
echo "$listing" | grep -qE ' etc/ssl/certs/ca-certificates.crt$' || { echo "error: no CA bundle in the image" >&2; exit 1; }
echo "$listing" | grep -qE '^drwxrwxrwt .* tmp/$' || { echo "error: the image's /tmp is not mode 1777" >&2; exit 1; }

# Which runtime and flags run a container on this machine: podman's defaults first, then
# explicit ulimits, then runc with them (see the header). Each failure is printed.
section "container runtime"
hard_nofile="$(ulimit -Hn)"
hard_nproc="$(ulimit -Hu)"
pid_max="$(cat /proc/sys/kernel/pid_max)"
[ "$hard_nofile" = unlimited ] && hard_nofile=1048576
if [ "$hard_nproc" = unlimited ] || [ "$hard_nproc" -gt "$pid_max" ]; then hard_nproc="$pid_max"; fi
ulimits=(--ulimit "nofile=$hard_nofile:$hard_nofile" --ulimit "nproc=$hard_nproc:$hard_nproc")
if [ -n "${PODMAN_RUNTIME:-}" ]; then
    candidates=("--runtime $PODMAN_RUNTIME|" "--runtime $PODMAN_RUNTIME|${ulimits[*]}")
else
    candidates=("|" "|${ulimits[*]}" "--runtime runc|${ulimits[*]}")
fi
podman_cmd=()
run_flags=()
for c in "${candidates[@]}"; do
    read -r -a g <<<"${c%%|*}"
    read -r -a f <<<"${c#*|}"
    echo "trying: podman ${g[*]} run --network=none ${f[*]} $image --version"
    if out="$(podman "${g[@]}" run --rm --network=none "${f[@]}" "$image" --version 2>&1)"; then
        echo "  ok: $out"
        podman_cmd=(podman "${g[@]}")
        run_flags=(--network=none "${f[@]}")
        break
    fi
    echo "  failed: $out"
done
if [ "${#podman_cmd[@]}" -eq 0 ]; then
    echo "error: no podman configuration runs a container here" >&2
    exit 1
fi
echo "using: ${podman_cmd[*]} run ${run_flags[*]}"

section "round trip through the container"
t_round="$(now)"
data="$work/data"
mkdir -p "$data"
cfg="$work/litestream.yml"
cat >"$cfg" <<'EOF'
dbs:
  - path: /data/app.db
    monitor-interval: 1s
    replicas:
      - url: file:///data/replica
        sync-interval: 1s
EOF

# The application, on the host: WAL mode, a table, 100 rows before walship starts.
python3 - "$data/app.db" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
c.executemany("INSERT INTO t (v) VALUES (?)", [(f"before-{i}",) for i in range(100)])
c.commit()
EOF

"${podman_cmd[@]}" run -d --name "$name" "${run_flags[@]}" \
    -v "$data:/data" -v "$cfg:/etc/litestream.yml:ro" "$image" >/dev/null
ctr_pid="$("${podman_cmd[@]}" inspect -f '{{.State.Pid}}' "$name")"
echo "walship runs in $name, host pid $ctr_pid"
logs() { echo "--- walship log:" >&2; "${podman_cmd[@]}" logs "$name" >&2 || true; }

# 100 more rows, one commit each, while walship runs in the container.
python3 - "$data/app.db" <<'EOF'
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1])
for i in range(100):
    c.execute("INSERT INTO t (v) VALUES (?)", (f"during-{i}",))
    c.commit()
    time.sleep(0.01)
EOF

# SQLite's POSIX locks cross the container boundary: the host asks the kernel who holds a lock
# on the -shm file (fcntl F_GETLK, no connection of its own) and hears walship's host pid.
python3 - "$data/app.db-shm" "$ctr_pid" <<'EOF'
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
# struct flock on x86_64: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
req = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
l_type, _, start, length, pid = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, req))
assert l_type != fcntl.F_UNLCK, "no lock on the -shm file: walship's locks are not visible"
assert pid == int(sys.argv[2]), f"lock held by pid {pid}, not by walship (pid {sys.argv[2]})"
kind = "read" if l_type == fcntl.F_RDLCK else "write"
print(f"host sees walship's {kind} lock on app.db-shm bytes {start}+{length} (pid {pid})")
EOF

# Replicated: restore the replica inside the running container (podman exec, no shell in the
# image) until all 200 rows are there, for at most 30 s.
probe_ok=""
for _ in $(seq 30); do
    rm -f "$data/probe.db" "$data/probe.db-wal" "$data/probe.db-shm"
    if "${podman_cmd[@]}" exec "$name" /walship restore -o /data/probe.db file:///data/replica >/dev/null 2>&1 &&
        [ "$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM t").fetchone()[0])' "$data/probe.db")" = 200 ]; then
        probe_ok=1
        break
    fi
    sleep 1
done
rm -f "$data/probe.db" "$data/probe.db-wal" "$data/probe.db-shm"
if [ -z "$probe_ok" ]; then
    echo "error: the replica did not reach 200 rows within 30 s" >&2
    logs
    exit 1
fi
echo "replica has all 200 rows"

# 50 rows right before the stop: only walship's last sync on SIGTERM can carry them (the next
# 1 s sync is not due yet).
python3 - "$data/app.db" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for i in range(50):
    c.execute("INSERT INTO t (v) VALUES (?)", (f"last-{i}",))
    c.commit()
EOF
t0="$(now)"
"${podman_cmd[@]}" stop -t 30 "$name" >/dev/null
stop_secs="$(since "$t0")"
exit_code="$("${podman_cmd[@]}" inspect -f '{{.State.ExitCode}}' "$name")"
echo "podman stop took ${stop_secs}s, walship exited with $exit_code; the end of its log:"
"${podman_cmd[@]}" logs "$name" 2>&1 | tail -n 4
if [ "$exit_code" != 0 ]; then
    echo "error: walship did not exit 0 on SIGTERM (137 = killed after the stop timeout)" >&2
    logs
    exit 1
fi

# Restore with the same image, as a one-off container, then compare on the host.
"${podman_cmd[@]}" run --rm --name "$name-restore" "${run_flags[@]}" -v "$data:/data" "$image" \
    restore -o /data/restored.db file:///data/replica
python3 - "$data/app.db" "$data/restored.db" <<'EOF'
import sqlite3, sys
def rows(p):
    c = sqlite3.connect(p)
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok", p
    return c.execute("SELECT id, v FROM t ORDER BY id").fetchall()
want, got = rows(sys.argv[1]), rows(sys.argv[2])
assert len(want) == 250, len(want)
assert got == want, f"restored {len(got)} rows, the database has {len(want)}"
print(f"container round trip: {len(got)} rows restored, equal to the database, integrity ok")
EOF
round_secs="$(since "$t_round")"

section "timings"
echo "static binary build: ${build_secs}s (${target_dir})"
echo "image build:         ${image_secs}s, image size ${image_bytes} bytes"
echo "round trip:          ${round_secs}s (podman stop ${stop_secs}s)"
echo "runtime:             ${podman_cmd[*]} run ${run_flags[*]}"
echo "container test: ok"
