#!/usr/bin/env bash
# Cargo runner for x86_64-pc-windows-gnu: runs a Windows .exe under Wine.
#   CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=/abs/path/.ci/wine-run.sh
# The prefix (WALSHIP_WINEPREFIX, default /tmp/walship-wine) must have been made
# by .ci/wine-prefix.sh first.
export WINEPREFIX=${WALSHIP_WINEPREFIX:-/tmp/walship-wine}
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}
exec /usr/lib/wine/wine64 "$@"
