#!/usr/bin/env bash
# What one request costs the tunnel, in counts that do not depend on how
# loaded the machine is: system calls by kind, context switches, CPU
# migrations and wake-ups, per request, for a fixed number of requests on
# one keep-alive connection. See docs/BENCHMARKS.md ("Per-request counts").
#
#   benches/request-costs.sh                       # anpx both --upstream, 2000 small requests
#   SYSTEM=anpx-smol REQUESTS=5000 benches/request-costs.sh
#   SYSTEM=direct benches/request-costs.sh         # the nginx backend alone, for reference
#   SPLIT=1 benches/request-costs.sh               # gateway and receiver in two processes
#
# Knobs (environment): SYSTEM (anpx, anpx-smol or direct), SPLIT (1: run the
# shell's `gateway` and `receiver` as two processes and count each apart
# instead of `both`), REQUESTS (2000),
# CONNECTIONS (1), FILE (small: 40 bytes; big: 1 MiB), BASE_PORT (28500;
# uses 2 ports), BIN_ANPX / BIN_ANPX_SMOL (binaries; default the bench
# profile's build of the working tree), OUT (directory for logs and raw counts).
#
# The load is wrk with a script that stops after REQUESTS responses, so the
# counts cover the same requests in every run. Two passes: `perf stat`
# (system calls, context switches, migrations, wake-ups the process
# issues, CPU time) and `perf trace -s` (system calls by kind and thread).
# The warm-up request and the process's idle activity fall inside the
# window; over 2000 requests they are below 0.1 per request.
set -euo pipefail

SYSTEM=${SYSTEM:-anpx}
REQUESTS=${REQUESTS:-2000}
CONNECTIONS=${CONNECTIONS:-1}
FILE=${FILE:-small}
BASE_PORT=${BASE_PORT:-28500}
REPO=$(cd "$(dirname "$0")/.." && pwd)

# shellcheck source=benches/tools.sh
. "$REPO/benches/tools.sh"
run_dir
for tool in wrk perf curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk linux-perf curl)"
done
find_nginx

P_BACKEND=$BASE_PORT
P_TUNNEL=$((BASE_PORT + 1))

stop_after_script "$OUT/stop-after.lua" "$REQUESTS"

# shellcheck source=benches/processes.sh
. "$REPO/benches/processes.sh"
backend_config "$P_BACKEND"
wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "nothing listens on port $1 (logs in $OUT/logs)"
}
start backend "$NGINX" -c "$OUT/backend.conf" -p "$OUT"
BACKEND_PID=$LAST_PID
wait_http "http://127.0.0.1:$P_BACKEND/small"
case $SYSTEM in
direct)
    # nginx's master forks the worker that serves: measure the worker.
    sleep 0.2
    MEASURED="nginx:$(pgrep -P "$BACKEND_PID" | head -1)"
    PORT=$P_BACKEND
    ;;
anpx | anpx-smol)
    if [ "$SYSTEM" = anpx ]; then BIN=$(bench_binary BIN_ANPX anpx); else BIN=$(bench_binary BIN_ANPX_SMOL anpx-smol); fi
    if [ "${SPLIT:-0}" = 1 ]; then
        start gateway "$BIN" gateway --listen "127.0.0.1:$P_TUNNEL" --admin-listen off
        GATEWAY_PID=$LAST_PID
        wait_port "$P_TUNNEL"
        start receiver "$BIN" receiver --gateway "ws://127.0.0.1:$P_TUNNEL/ws" \
            --upstream "http://127.0.0.1:$P_BACKEND"
        MEASURED="gateway:$GATEWAY_PID receiver:$LAST_PID"
    else
        start "$SYSTEM" "$BIN" both --upstream "http://127.0.0.1:$P_BACKEND" \
            --listen "127.0.0.1:$P_TUNNEL" --admin-listen off
        MEASURED="$SYSTEM:$LAST_PID"
    fi
    PORT=$P_TUNNEL
    ;;
*) die "SYSTEM must be anpx, anpx-smol or direct" ;;
esac
URL="http://127.0.0.1:$PORT/$FILE"
wait_http "$URL"
# Warm the pools (keep-alive connection to the backend, buffers).
wrk -t1 -c"$CONNECTIONS" -d1s "$URL" >/dev/null

run_wrk() {
    wrk -t1 -c"$CONNECTIONS" -d600s -s "$OUT/stop-after.lua" "$URL" >"$OUT/wrk.$1.txt" ||
        die "wrk failed: $(cat "$OUT/wrk.$1.txt")"
}

EVENTS=raw_syscalls:sys_enter,context-switches,cpu-migrations,sched:sched_wakeup,task-clock
PERFS=()
PID_LIST=""
for m in $MEASURED; do
    pid=${m#*:}
    PID_LIST+="${PID_LIST:+,}$pid"
    # Which process each thread belongs to, for the by-thread table.
    for t in /proc/"$pid"/task/*; do echo "${t##*/} ${m%%:*}"; done >>"$OUT/threads.txt"
    perf stat -x, -e "$EVENTS" -p "$pid" -o "$OUT/stat.${m%%:*}.csv" &
    PERFS+=($!)
done
sleep 0.3
run_wrk stat
kill -INT "${PERFS[@]}"
wait "${PERFS[@]}" || true

perf trace -s -p "$PID_LIST" -o "$OUT/trace.txt" &
PERF=$!
sleep 0.5
run_wrk trace
kill -INT "$PERF"
wait "$PERF" || true

say "$SYSTEM, $FILE, $CONNECTIONS connection(s); raw data in $OUT"
python3 - "$OUT" "$REQUESTS" "$MEASURED" <<'EOF'
import re, sys
out, n, measured = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
n_stat = n_trace = n
for m in measured:
    label = m.split(":")[0]
    print(f"{label}: per request, over {n} requests (perf stat):")
    for line in open(f"{out}/stat.{label}.csv"):
        f = line.strip().split(",")
        if len(f) < 3 or not f[0] or f[0].startswith("<"):
            continue
        value, unit, event = float(f[0]), f[1], f[2]
        if event == "task-clock":
            print(f"  {'CPU (task-clock)':<24} {value * 1000 / n:8.1f} us")
        else:
            print(f"  {event:<24} {value / n:8.2f}")
owner = dict(line.split() for line in open(f"{out}/threads.txt"))
trace = f"{out}/trace.txt"
totals, threads = {}, {}
thread = None
for line in open(trace):
    m = re.match(r"\s*(\S.*?) \((\d+)\), (\d+) events", line)
    if m:
        tid = m.group(2)
        thread = f"{owner.get(tid, '?')} {m.group(1)} ({tid})"
        continue
    m = re.match(r"\s+(\w+)\s+(\d+)\s+(\d+)\s", line)
    if m and thread is not None:
        name, calls = m.group(1), int(m.group(2))
        totals[name] = totals.get(name, 0) + calls
        threads.setdefault(thread, {})[name] = threads.get(thread, {}).get(name, 0) + calls
print(f"system calls per request by kind, over {n_trace} requests (perf trace -s):")
for name, calls in sorted(totals.items(), key=lambda kv: -kv[1]):
    if calls / n_trace >= 0.05:
        print(f"  {name:<24} {calls / n_trace:8.2f}")
print(f"  {'all':<24} {sum(totals.values()) / n_trace:8.2f}")
print("by thread:")
for t, calls in sorted(threads.items(), key=lambda kv: -sum(kv[1].values())):
    total = sum(calls.values()) / n_trace
    if total >= 0.05:
        top = ", ".join(f"{k} {v / n_trace:.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:5])
        print(f"  {t:<24} {total:8.2f}  ({top})")
EOF
