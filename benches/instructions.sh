#!/usr/bin/env bash
# Instructions per request of `anpx both --upstream` (or anpx-smol), counted
# by valgrind's callgrind: the same for the same binary and load whatever
# else the machine is doing, so two builds can be compared on a busy
# machine. See docs/BENCHMARKS.md ("Instructions per request").
#
#   benches/instructions.sh                            # anpx, small responses
#   BIN_ANPX=/path/a BEFORE_ANPX=/path/b benches/instructions.sh   # two builds
#   SYSTEM=anpx-smol benches/instructions.sh
#
# Knobs (environment): SYSTEM (anpx or anpx-smol), REQUESTS (3000),
# CONNECTIONS (8), FILE (small: 40 bytes; big: 1 MiB), BASE_PORT (28600;
# uses 3 ports), BIN_ANPX / BIN_ANPX_SMOL (default the bench profile's
# build of the working tree), BEFORE_ANPX / BEFORE_ANPX_SMOL (a second build counted
# the same way), OUT (directory for logs and the callgrind files, which
# `callgrind_annotate --inclusive=yes` reads).
#
# Each build runs twice, with REQUESTS and with 2 x REQUESTS requests; the
# difference divided by REQUESTS is the cost of a request, without the
# process's start and exit. Under callgrind the process runs on one thread
# at a time, so this counts work, not waiting. The total still moves by a
# few percent between runs of one binary (how often the runtime polls and
# parks depends on timing); with a BEFORE build, benches/callgrind_diff.py
# then prints the difference by crate and by function, where a change's
# own functions count the same to a few instructions run after run.
set -euo pipefail

SYSTEM=${SYSTEM:-anpx}
REQUESTS=${REQUESTS:-3000}
CONNECTIONS=${CONNECTIONS:-8}
FILE=${FILE:-small}
BASE_PORT=${BASE_PORT:-28600}
REPO=$(cd "$(dirname "$0")/.." && pwd)

# shellcheck source=benches/tools.sh
. "$REPO/benches/tools.sh"
run_dir
need valgrind valgrind
need wrk wrk
need curl curl
find_nginx

case $SYSTEM in
anpx) BIN_VAR=BIN_ANPX BEFORE_VAR=BEFORE_ANPX NAME=anpx ;;
anpx-smol) BIN_VAR=BIN_ANPX_SMOL BEFORE_VAR=BEFORE_ANPX_SMOL NAME=anpx-smol ;;
*) die "SYSTEM must be anpx or anpx-smol" ;;
esac
BIN=$(bench_binary "$BIN_VAR" "$NAME")
BEFORE=${!BEFORE_VAR:-}

P_BACKEND=$BASE_PORT
P_TUNNEL=$((BASE_PORT + 1))

# shellcheck source=benches/processes.sh
. "$REPO/benches/processes.sh"
backend_config "$P_BACKEND"
start backend "$NGINX" -c "$OUT/backend.conf" -p "$OUT"
wait_http "http://127.0.0.1:$P_BACKEND/$FILE"

# Total instructions of one process that served `n` requests.
count() { # label binary n
    local label=$1 bin=$2 n=$3
    stop_after_script "$OUT/stop.$n.lua" "$n"
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$label.$n" \
        "$bin" both --upstream "http://127.0.0.1:$P_BACKEND" \
        --listen "127.0.0.1:$P_TUNNEL" --admin-listen off >"$OUT/logs/$label.$n.log" 2>&1 &
    local pid=$!
    wait_http "http://127.0.0.1:$P_TUNNEL/$FILE"
    wrk -t1 -c"$CONNECTIONS" -d600s -s "$OUT/stop.$n.lua" \
        "http://127.0.0.1:$P_TUNNEL/$FILE" >"$OUT/wrk.$label.$n.txt" ||
        die "wrk failed: $(cat "$OUT/wrk.$label.$n.txt")"
    kill -INT "$pid"
    wait "$pid" || true
    sed -n 's/.*I *refs: *//p' "$OUT/logs/$label.$n.log" | tr -d ,
}

per_request() { # label binary
    local one two
    one=$(count "$1" "$2" "$REQUESTS")
    two=$(count "$1" "$2" $((2 * REQUESTS)))
    [ -n "$one" ] && [ -n "$two" ] || die "no count from callgrind (logs in $OUT/logs)"
    echo $(((two - one) / REQUESTS))
}

say "$SYSTEM both --upstream, $FILE, $CONNECTIONS connections, $REQUESTS and $((2 * REQUESTS)) requests under callgrind; data in $OUT"
now=$(per_request build "$BIN")
printf 'instructions per request: %s (%s)\n' "$now" "$BIN"
if [ -n "$BEFORE" ]; then
    before=$(per_request before "$BEFORE")
    printf 'instructions per request: %s (%s)\n' "$before" "$BEFORE"
    python3 -c "import sys; print(f'build / before: {int(sys.argv[1]) / int(sys.argv[2]):.3f}x')" "$now" "$before"
    need callgrind_annotate valgrind
    python3 "$REPO/benches/callgrind_diff.py" "$OUT"
fi
