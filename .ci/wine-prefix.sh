#!/usr/bin/env bash
# Make a Wine prefix in which Rust-built Windows .exe files run (test fixture only).
#
#   bash .ci/wine-prefix.sh [PREFIX]      # default PREFIX: /tmp/walship-wine
#
# Needs Debian's wine64 (Wine 8.0) and gcc-mingw-w64-x86-64:
#   apt-get install -y --no-install-recommends wine64 gcc-mingw-w64-x86-64
# Works without X (no DISPLAY) and may be run again: an existing prefix is kept,
# the stub DLL is rebuilt and put in place each time.
#
# Why the stub: Rust's std (>= 1.78) imports ProcessPrng from
# bcryptprimitives.dll, which Wine 8 lacks; without it every Rust .exe exits 53
# (STATUS_DLL_NOT_FOUND) with no output. The stub forwards to RtlGenRandom.
set -euo pipefail

PREFIX=${1:-/tmp/walship-wine}
WINE=${WINE:-/usr/lib/wine/wine64}
WINESERVER=${WINESERVER:-/usr/lib/wine/wineserver}
CC_WIN=${CC_WIN:-x86_64-w64-mingw32-gcc}

for tool in "$WINE" "$WINESERVER"; do
  [ -x "$tool" ] || { echo "wine-prefix: $tool not found (apt-get install wine64)" >&2; exit 1; }
done
command -v "$CC_WIN" >/dev/null || { echo "wine-prefix: $CC_WIN not found (apt-get install gcc-mingw-w64-x86-64)" >&2; exit 1; }

mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)   # Wine wants an absolute path
export WINEPREFIX="$PREFIX" WINEDEBUG=-all
# No Mono / Gecko install prompts (they would need a display and the network).
export WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY WAYLAND_DISPLAY

if [ ! -f "$PREFIX/system.reg" ] || [ ! -d "$PREFIX/drive_c/windows/system32" ]; then
  echo "wine-prefix: creating $PREFIX" >&2
  "$WINE" wineboot -i >/dev/null 2>&1 || true
  # The registry is written out when the server exits: wait for it.
  "$WINESERVER" -w
  if [ ! -f "$PREFIX/system.reg" ] || [ ! -d "$PREFIX/drive_c/windows/system32" ]; then
    echo "wine-prefix: wineboot did not create $PREFIX" >&2
    exit 1
  fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/b.c" <<'C'
#include <windows.h>
#include <ntsecapi.h>
BOOL WINAPI ProcessPrng(PBYTE p, SIZE_T n) { return RtlGenRandom(p, (ULONG)n); }
C
cat > "$tmp/b.def" <<'DEF'
LIBRARY bcryptprimitives
EXPORTS
ProcessPrng
DEF
"$CC_WIN" -shared -O2 -s -o "$tmp/bcryptprimitives.dll" "$tmp/b.c" "$tmp/b.def" -ladvapi32
install -m 644 "$tmp/bcryptprimitives.dll" "$PREFIX/drive_c/windows/system32/bcryptprimitives.dll.new"
mv -f "$PREFIX/drive_c/windows/system32/bcryptprimitives.dll.new" \
      "$PREFIX/drive_c/windows/system32/bcryptprimitives.dll"
echo "wine-prefix: ready: WINEPREFIX=$PREFIX" >&2
