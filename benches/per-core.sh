#!/usr/bin/env bash
# What keeping every request on one core would give: each shell as one
# process on every core against one single-threaded process per core, side
# by side with rathole, on loopback, driven the same way. See
# docs/BENCHMARKS.md ("Run 13") for what it measured.
#
#   benches/per-core.sh                  # ~3 min on a 2-core machine
#
# Every system gets two `wrk -t1 -c16` at once. A "1 process" system takes
# both on one port: `anpx both` and `anpx-smol both` with their default
# lanes (one per core, docs/ARCHITECTURE.md). A "2 processes" system is
# two copies of the same command on two ports, one wrk each, with one lane
# each (`TOKIO_WORKER_THREADS=1`, `SMOL_THREADS=1`): two processes share
# nothing, so no request crosses between threads, the upper bound of the
# lanes inside one process. Each cell prints the median of the rounds of the two wrk's
# requests/s added up, and the ratios that matter.
#
# Knobs (environment): ROUNDS (3), DURATION (seconds per wrk run, 4),
# BASE_PORT (28700; uses 8 ports from there), BIN_ANPX / BIN_ANPX_SMOL /
# BIN_RATHOLE (binaries to use; default the bench profile's build of the
# working tree and the installed rathole), OUT (directory for logs and raw
# results).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4}
BASE_PORT=${BASE_PORT:-28700}
REPO=$(cd "$(dirname "$0")/.." && pwd)

# shellcheck source=benches/tools.sh
. "$REPO/benches/tools.sh"
run_dir
find_nginx
need wrk wrk
need curl curl
need python3 python3-minimal
find_rathole
ANPX=$(bench_binary BIN_ANPX anpx)
ANPX_SMOL=$(bench_binary BIN_ANPX_SMOL anpx-smol)

# shellcheck source=benches/processes.sh
. "$REPO/benches/processes.sh"

P_BACKEND=$BASE_PORT
backend_config "$P_BACKEND"
rathole_config $((BASE_PORT + 1)) $((BASE_PORT + 2)) "$P_BACKEND"
start backend "$NGINX" -c "$OUT/backend.conf" -p "$OUT"
start rathole-server "$RATHOLE" -s "$OUT/rathole-server.toml"
start rathole-client "$RATHOLE" -c "$OUT/rathole-client.toml"

tunnel() { # name port command...
    local name=$1 port=$2
    shift 2
    start "$name" "$@" both --upstream "http://127.0.0.1:$P_BACKEND" \
        --listen "127.0.0.1:$port" --admin-listen off
}
tunnel anpx-1 $((BASE_PORT + 3)) "$ANPX"
tunnel anpx-2a $((BASE_PORT + 4)) env TOKIO_WORKER_THREADS=1 "$ANPX"
tunnel anpx-2b $((BASE_PORT + 5)) env TOKIO_WORKER_THREADS=1 "$ANPX"
tunnel smol-1 $((BASE_PORT + 6)) "$ANPX_SMOL"
tunnel smol-2a $((BASE_PORT + 7)) env SMOL_THREADS=1 "$ANPX_SMOL"
tunnel smol-2b $((BASE_PORT + 8)) env SMOL_THREADS=1 "$ANPX_SMOL"

# The two ports each system's two wrk drive.
SYSTEMS="rathole anpx-1p anpx-2p smol-1p smol-2p"
declare -A PORTS=(
    [rathole]="$((BASE_PORT + 2)) $((BASE_PORT + 2))"
    [anpx-1p]="$((BASE_PORT + 3)) $((BASE_PORT + 3))"
    [anpx-2p]="$((BASE_PORT + 4)) $((BASE_PORT + 5))"
    [smol-1p]="$((BASE_PORT + 6)) $((BASE_PORT + 6))"
    [smol-2p]="$((BASE_PORT + 7)) $((BASE_PORT + 8))"
)
for port in $((BASE_PORT + 2)) $((BASE_PORT + 3)) $((BASE_PORT + 4)) $((BASE_PORT + 5)) \
    $((BASE_PORT + 6)) $((BASE_PORT + 7)) $((BASE_PORT + 8)); do
    wait_http "http://127.0.0.1:$port/small"
done

RESULTS="$OUT/results.tsv"
printf 'round\tcell\tsystem\treq_per_s\n' >"$RESULTS"
rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
say "per core: $ROUNDS rounds of ${DURATION}s per cell; results in $OUT"
for round in $(seq 1 "$ROUNDS"); do
    for file in small big; do
        for system in $SYSTEMS; do
            read -r a b <<<"${PORTS[$system]}"
            log="$OUT/logs/wrk.$round.$file.$system"
            wrk -t1 -c16 -d"${DURATION}s" "http://127.0.0.1:$a/$file" >"$log.a" 2>&1 &
            first=$!
            wrk -t1 -c16 -d"${DURATION}s" "http://127.0.0.1:$b/$file" >"$log.b" 2>&1 ||
                die "wrk failed against $system (see $log.b)"
            wait "$first" || die "wrk failed against $system (see $log.a)"
            ! grep -q "Non-2xx\|Socket errors" "$log.a" "$log.b" ||
                die "$system answered with errors (see $log.a, $log.b)"
            printf '%s\t%s\t%s\t%s\n' "$round" "$file" "$system" \
                "$(echo "$(rps "$log.a") $(rps "$log.b")" | awk '{ printf "%.0f", $1 + $2 }')" >>"$RESULTS"
        done
    done
done

python3 - "$RESULTS" "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'EOF'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])][1:]
median = {}
for cell in ("small", "big"):
    for system in ("rathole", "anpx-1p", "anpx-2p", "smol-1p", "smol-2p"):
        median[cell, system] = statistics.median(float(r[3]) for r in rows if r[1] == cell and r[2] == system)
print(f"\nper core, commit {sys.argv[2]}: medians of the rounds, two wrk -t1 -c16 at once")
print("| cell | rathole | anpx, 1 process | anpx, 2 processes | × 1 process | anpx-smol, 1 process | anpx-smol, 2 processes | × 1 process |")
print("|---|---|---|---|---|---|---|---|")
for cell, unit in (("small", "req/s"), ("big", "MiB/s")):
    m = lambda s: median[cell, s]
    print(f"| {cell} ({unit}) | {m('rathole'):,.0f} | {m('anpx-1p'):,.0f} | {m('anpx-2p'):,.0f} "
          f"| {m('anpx-2p') / m('anpx-1p'):.2f}× | {m('smol-1p'):,.0f} | {m('smol-2p'):,.0f} "
          f"| {m('smol-2p') / m('smol-1p'):.2f}× |")
for cell in ("small", "big"):
    r = median[cell, "rathole"]
    print(f"{cell}: × rathole: anpx {median[cell, 'anpx-1p'] / r:.2f}× → {median[cell, 'anpx-2p'] / r:.2f}×, "
          f"anpx-smol {median[cell, 'smol-1p'] / r:.2f}× → {median[cell, 'smol-2p'] / r:.2f}×; "
          f"anpx-smol / anpx {median[cell, 'smol-1p'] / median[cell, 'anpx-1p']:.2f}× → "
          f"{median[cell, 'smol-2p'] / median[cell, 'anpx-2p']:.2f}×")
EOF
