#!/usr/bin/env bash
# anpx and anpx-smol built with profile-guided optimization: an
# instrumented build serves a short load through `both --upstream` (small
# and 1 MiB responses at 32 connections, small ones at one connection),
# and the build that follows lays out and inlines the code by what that
# load ran. See docs/BENCHMARKS.md ("Run 25") for what it gives.
#
#   benches/pgo.sh                      # ~21 min on a 2-core machine
#   PROFILE=release benches/pgo.sh      # the binaries one deploys
#
# Prints two lines to stdout, BIN_ANPX=<path> and BIN_ANPX_SMOL=<path>,
# which benches/vs-rathole.sh and benches/instructions.sh take as they
# are (`env $(benches/pgo.sh) benches/vs-rathole.sh`); everything else
# goes to stderr.
#
# Knobs (environment): PROFILE (cargo profile, `bench` by default: release
# with debug info), TRAIN_SECONDS (seconds of wrk per load, 4), BASE_PORT
# (28700; uses 2 ports), OUT (directory for the training's logs; a new
# temporary one by default), PGO_TARGET_DIR (where the two builds and the
# profile go, `<target>/pgo` by default: they are built with other flags
# than the workspace's, so they have their own directories).
#
# Needs llvm-profdata of the LLVM version rustc is built on (`rustc -vV`);
# it is looked for as llvm-profdata-<major>, in rustup's llvm-tools
# component, then as llvm-profdata, and installed from Debian's
# llvm-<major> when none fits.
set -euo pipefail

PROFILE=${PROFILE:-bench}
TRAIN_SECONDS=${TRAIN_SECONDS:-4}
BASE_PORT=${BASE_PORT:-28700}
REPO=$(cd "$(dirname "$0")/.." && pwd)

# shellcheck source=benches/tools.sh
. "$REPO/benches/tools.sh"
run_dir
need wrk wrk
need curl curl
find_nginx

# --- llvm-profdata of rustc's LLVM --------------------------------------------

LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[ -n "$LLVM_MAJOR" ] || die "rustc -vV names no LLVM version"
profdata_major() { "$1" --version 2>/dev/null | sed -n 's/.*LLVM version \([0-9]*\).*/\1/p' | head -1; }
find_profdata() {
    local sysroot candidate
    sysroot=$(rustc --print sysroot)
    for candidate in "llvm-profdata-$LLVM_MAJOR" \
        "$sysroot"/lib/rustlib/*/bin/llvm-profdata llvm-profdata; do
        candidate=$(command -v "$candidate" || true)
        if [ -n "$candidate" ] && [ "$(profdata_major "$candidate")" = "$LLVM_MAJOR" ]; then
            echo "$candidate"
            return
        fi
    done
}
PROFDATA=$(find_profdata)
if [ -z "$PROFDATA" ]; then
    # A profile written by one LLVM is not read by another's tools.
    need "llvm-profdata-$LLVM_MAJOR" "llvm-$LLVM_MAJOR"
    PROFDATA=$(find_profdata)
fi
[ -n "$PROFDATA" ] || die "no llvm-profdata of LLVM $LLVM_MAJOR (rustc's); install llvm-$LLVM_MAJOR or rustup's llvm-tools"

# Absolute: the profile's path is in the flags, and rustc runs in each
# crate's own directory.
PGO_TARGET_DIR=$(realpath -m "${PGO_TARGET_DIR:-$(target_dir)/pgo}")
# cargo keeps the `bench` profile's artifacts in release/.
PROFILE_DIR=$PROFILE
case $PROFILE in bench | release) PROFILE_DIR=release ;; dev | test) PROFILE_DIR=debug ;; esac

build() { # target-dir rustflags
    say "building anpx and anpx-smol (cargo build --profile $PROFILE, RUSTFLAGS=$2)"
    (cd "$REPO" && CARGO_TARGET_DIR=$1 RUSTFLAGS="${RUSTFLAGS:-} $2" \
        cargo build --profile "$PROFILE" -p shell-tokio --bin anpx -p shell-smol --bin anpx-smol >&2) ||
        die "the build failed"
}

# --- the instrumented build and its load --------------------------------------

# Both paths are in the flags, and cargo rebuilds everything when its flags
# change: they stay the same from run to run, so that cargo can reuse an
# earlier run's instrumented build. The optimized one is rebuilt whenever
# the profile is new (rustc tracks the profile file), that is, every run.
RAW="$PGO_TARGET_DIR/profraw"
PROFILE_DATA="$PGO_TARGET_DIR/anpx.profdata"
rm -rf "$RAW"
mkdir -p "$RAW"
build "$PGO_TARGET_DIR/generate" "-Cprofile-generate=$RAW"

P_BACKEND=$BASE_PORT
P_TUNNEL=$((BASE_PORT + 1))
# shellcheck source=benches/processes.sh
. "$REPO/benches/processes.sh"
backend_config "$P_BACKEND"
start backend "$NGINX" -c "$OUT/backend.conf" -p "$OUT"
wait_http "http://127.0.0.1:$P_BACKEND/small"

for name in anpx anpx-smol; do
    bin="$PGO_TARGET_DIR/generate/$PROFILE_DIR/$name"
    start "$name" "$bin" both --upstream "http://127.0.0.1:$P_BACKEND" \
        --listen "127.0.0.1:$P_TUNNEL" --admin-listen off
    pid=$LAST_PID
    wait_http "http://127.0.0.1:$P_TUNNEL/small"
    # file, connections, wrk threads (no more than connections)
    for load in "small 32 2" "big 32 2" "small 1 1"; do
        read -r file conns threads <<<"$load"
        say "training $name: $file responses, $conns connections, ${TRAIN_SECONDS}s"
        log="$OUT/logs/wrk.$name.$file.$conns.txt"
        wrk -t"$threads" -c"$conns" -d"${TRAIN_SECONDS}s" "http://127.0.0.1:$P_TUNNEL/$file" \
            >"$log" 2>&1 || die "wrk failed: $(cat "$log")"
        # A profile of failing requests would optimize the wrong path.
        ! grep -q -e "Non-2xx" -e "Socket errors" "$log" || die "training requests failed: $(cat "$log")"
    done
    # The profile is written when the process exits: a graceful stop.
    kill -INT "$pid"
    wait "$pid" || die "$name did not exit cleanly (see $OUT/logs/$name.log)"
done
compgen -G "$RAW/*.profraw" >/dev/null || die "the instrumented binaries wrote no profile to $RAW"
"$PROFDATA" merge -o "$PROFILE_DATA" "$RAW"/*.profraw

# --- the optimized build --------------------------------------------------------

build "$PGO_TARGET_DIR/use" "-Cprofile-use=$PROFILE_DATA"
echo "BIN_ANPX=$PGO_TARGET_DIR/use/$PROFILE_DIR/anpx"
echo "BIN_ANPX_SMOL=$PGO_TARGET_DIR/use/$PROFILE_DIR/anpx-smol"
