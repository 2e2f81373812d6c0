#!/usr/bin/env bash
# Cross-checks walship for macOS (aarch64-apple-darwin, x86_64-apple-darwin) from Linux with
# cargo-zigbuild: zig is the C compiler for the bundled SQLite and aws-lc-sys, and the linker.
#
# Levels (printed as "LEVEL: ..."), each then running clippy on all targets (tests,
# examples, benches) with -D warnings:
#   check - (default; what .ci/run does) clippy alone: every crate type-checked, the C parts
#           (bundled SQLite, aws-lc-sys) compiled by zig for the target. Cold ~2.5 min per
#           target, and little disk (metadata only).
#   lib   - (MACOS_LEVEL=lib) `cargo zigbuild --lib` first: full code generation of the
#           library and every dependency; only the final link is left out. ~4.5 min per
#           target cold, ~2 GB per target.
#   link  - (SDKROOT=/path/MacOSX<ver>.sdk) `cargo zigbuild --bins`: the real walship
#           Mach-O binary. Without an SDK the link stops at `unable to find system framework
#           "CoreServices"` (also CoreFoundation, Security), and no SDK can be fetched here
#           (only package registries are reachable).
#
# Env: ZIG_VENV (default /tmp/walship-zig), CARGO_TARGET_DIR (default target/macos, kept apart
# from target/ so a running Linux build is not blocked), MACOS_TARGETS (default both),
# MACOS_LEVEL, SDKROOT (optional, see above). Warm: seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ZIG_VENV="${ZIG_VENV:-/tmp/walship-zig}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/macos}"
TARGETS=(${MACOS_TARGETS:-aarch64-apple-darwin x86_64-apple-darwin})
# Pinned to the versions this was tried with (zig's Darwin support changes between releases).
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1

# zig and cargo-zigbuild come from PyPI (the one way to get them here: no other downloads).
# pip is a no-op when the pinned versions are already installed.
if [ ! -x "$ZIG_VENV/bin/pip" ]; then
    python3 -m venv "$ZIG_VENV" # Debian: needs python3-venv
fi
"$ZIG_VENV/bin/pip" install -q "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
export PATH="$ZIG_VENV/bin:$PATH"

# The Rust standard library for the Apple targets, and clippy (both no-ops when present).
rustup target add "${TARGETS[@]}"
rustup component add clippy

if [ -n "${SDKROOT:-}" ]; then
    level=link
    build=(--bins)
elif [ "${MACOS_LEVEL:-check}" = lib ]; then
    level=lib
    build=(--lib)
else
    level=check
    build=()
fi

for t in "${TARGETS[@]}"; do
    echo "==== $t LEVEL: $level${SDKROOT:+ (SDKROOT=$SDKROOT)} ===="
    start=$SECONDS
    if [ "${#build[@]}" -gt 0 ]; then
        cargo zigbuild --target "$t" "${build[@]}"
    fi
    # `cargo zigbuild clippy` is not a thing: the checking subcommands live on the binary
    # itself. Plain `cargo clippy --target ...` would fail in the C build scripts (host gcc).
    cargo-zigbuild clippy --target "$t" --all-targets -- -D warnings
    echo "==== $t LEVEL: $level OK in $((SECONDS - start)) s ===="
done
echo "macOS check passed at level '$level' for: ${TARGETS[*]}"
