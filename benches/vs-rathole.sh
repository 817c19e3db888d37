#!/usr/bin/env bash
# anpx and anpx-smol side by side with rathole, nginx and direct access, on
# loopback, driven by the same wrk. See docs/BENCHMARKS.md ("Against
# rathole") for what it measures and the figures.
#
#   benches/vs-rathole.sh                 # ~6 min on a 2-core machine, after ~20 min of builds
#   ROUNDS=1 DURATION=2 benches/vs-rathole.sh   # a quick look
#
# Knobs (environment): ROUNDS (3), DURATION (seconds per wrk run, 5),
# SYSTEMS (the systems to drive, default "direct rathole nginx anpx anpx-smol"),
# BASE_PORT (28400; uses the 14 ports from there), GIB_TEST (1: move 1 GiB
# through separate gateway and receiver processes of each shell and report
# their peak RSS; 0: skip), IDLE_WAIT (seconds after the load before the idle
# RSS is read, 10), OUT (directory for configs, logs and raw results; a new
# temporary one by default), BIN_ANPX / BIN_ANPX_SMOL / BIN_RATHOLE (binaries to use
# instead of building or installing them), PERF_SYSTEM and PERF_CELL (record
# `perf record -g` of that system's process during that cell, e.g.
# PERF_SYSTEM=anpx PERF_CELL=small32; the data lands in $OUT; PERF_CALL_GRAPH
# is perf's option for the call graph, "-g" by default, "--call-graph dwarf"
# to see the callers of functions built without frame pointers), BEFORE_ANPX /
# BEFORE_ANPX_SMOL (another build of either binary, e.g. the commit before a
# change: driven as the systems anpx-before / anpx-smol-before, alternating
# with the others, for A/B figures from one run), PGO (1, the default:
# anpx and anpx-smol as benches/pgo.sh builds them, with profile-guided
# optimization, ~20 min of builds; 0: `cargo build --profile bench` alone;
# either way only when BIN_ANPX and BIN_ANPX_SMOL are not given).
#
# Besides the throughput and latency medians, it prints each system's CPU
# time per request at small responses and 32 connections (the tunnel's user
# and system time, the nginx backend's, wrk's), and the RSS of each anpx
# process; the raw figures are in $OUT (results.tsv, cpu.tsv, rss.tsv).
#
# Everything listens on 127.0.0.1 only. Missing tools are installed: nginx
# (Debian's nginx-light) and wrk with apt-get, rathole with
# `cargo install rathole --no-default-features --features server,client`
# (unlocked: its lock file pins a `time` that current Rust no longer
# compiles; only the TCP transport is used here); anpx and anpx-smol are built
# by benches/pgo.sh (the bench profile, release with debug info for perf,
# with profile-guided optimization; llvm-profdata of rustc's LLVM is
# installed from Debian's llvm-<major> when missing), or with PGO=0 by
# `cargo build --profile bench` alone.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
SYSTEMS=${SYSTEMS:-"direct rathole nginx anpx anpx-smol"}
BASE_PORT=${BASE_PORT:-28400}
GIB_TEST=${GIB_TEST:-1}
IDLE_WAIT=${IDLE_WAIT:-10}
PERF_SYSTEM=${PERF_SYSTEM:-}
PERF_CELL=${PERF_CELL:-}
PERF_CALL_GRAPH=${PERF_CALL_GRAPH:--g}
REPO=$(cd "$(dirname "$0")/.." && pwd)

# shellcheck source=benches/tools.sh
. "$REPO/benches/tools.sh"
run_dir

# --- what is missing gets installed -----------------------------------------

find_nginx
need wrk wrk
need python3 python3-minimal
need curl curl

RATHOLE=""
if [[ " $SYSTEMS " == *" rathole "* ]]; then find_rathole; fi

# Not ANPX_*: the binaries refuse environment variables of that prefix that
# are not configuration keys.
# A shell's binary is found (or built) only when this run measures it.
measured() { [[ " $SYSTEMS " == *" $1 "* ]] || [ "$GIB_TEST" = 1 ]; }
ANPX="" ANPX_SMOL=""
# What the summary says the anpx binaries are.
BUILT="anpx ${BIN_ANPX:-built with cargo build --profile bench}, anpx-smol ${BIN_ANPX_SMOL:-built with cargo build --profile bench}"
if [ -z "${BIN_ANPX:-}${BIN_ANPX_SMOL:-}" ]; then
    BUILT="cargo build --profile bench"
    if [ "${PGO:-1}" = 1 ] && { measured anpx || measured anpx-smol; }; then
        # pgo.sh prints BIN_ANPX=… and BIN_ANPX_SMOL=…; its own ports and files.
        PGO_BINS=$(OUT="$OUT/pgo" BASE_PORT=$((BASE_PORT + 12)) "$REPO/benches/pgo.sh") ||
            die "benches/pgo.sh failed (its logs are in $OUT/pgo/logs); PGO=0 measures the build without it"
        BIN_ANPX=$(sed -n 's/^BIN_ANPX=//p' <<<"$PGO_BINS")
        BIN_ANPX_SMOL=$(sed -n 's/^BIN_ANPX_SMOL=//p' <<<"$PGO_BINS")
        BUILT="profile-guided (benches/pgo.sh)"
    fi
fi
if measured anpx; then ANPX=$(bench_binary BIN_ANPX anpx); fi
if measured anpx-smol; then ANPX_SMOL=$(bench_binary BIN_ANPX_SMOL anpx-smol); fi

# --- ports, files, configurations --------------------------------------------

P_BACKEND=$BASE_PORT
P_RATHOLE_CTRL=$((BASE_PORT + 1))
P_RATHOLE=$((BASE_PORT + 2))
P_NGINX=$((BASE_PORT + 3))
P_ANPX=$((BASE_PORT + 4))
P_SMOL=$((BASE_PORT + 5))
P_GIB_GW=$((BASE_PORT + 6))
P_GIB_SMOL_GW=$((BASE_PORT + 7))

declare -A PORT=([direct]=$P_BACKEND [rathole]=$P_RATHOLE [nginx]=$P_NGINX [anpx]=$P_ANPX [anpx-smol]=$P_SMOL
    [anpx-before]=$((BASE_PORT + 8)) [anpx-smol-before]=$((BASE_PORT + 9)))
declare -A BIN=([anpx]=$ANPX [anpx-smol]=$ANPX_SMOL)
SHELLS="anpx anpx-smol"
if [ -n "${BEFORE_ANPX:-}" ]; then
    BIN[anpx-before]=$BEFORE_ANPX
    SHELLS+=" anpx-before"
    SYSTEMS+=" anpx-before"
fi
if [ -n "${BEFORE_ANPX_SMOL:-}" ]; then
    BIN[anpx-smol-before]=$BEFORE_ANPX_SMOL
    SHELLS+=" anpx-smol-before"
    SYSTEMS+=" anpx-smol-before"
fi

# shellcheck source=benches/processes.sh
. "$REPO/benches/processes.sh"
backend_config "$P_BACKEND"
truncate -s 1G "$OUT/www/gib" # sparse: served without touching the disk
chmod a+r "$OUT/www/gib"
nginx_conf proxy auto "upstream backend {
        server 127.0.0.1:$P_BACKEND;
        keepalive 64;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$P_NGINX;
        proxy_buffering on;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"

# --- processes ----------------------------------------------------------------

rathole_config "$P_RATHOLE_CTRL" "$P_RATHOLE" "$P_BACKEND"

kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

start backend "$NGINX" -c "$OUT/backend.conf" -p "$OUT"
wait_http "http://127.0.0.1:$P_BACKEND/small" "the nginx backend"
BACKEND_WORKER=$(pgrep -P "$(pid_of backend)" | head -n1)
if [[ " $SYSTEMS " == *" nginx "* ]]; then
    start proxy "$NGINX" -c "$OUT/proxy.conf" -p "$OUT"
fi
if [[ " $SYSTEMS " == *" rathole "* ]]; then
    start rathole-server "$RATHOLE" -s "$OUT/rathole-server.toml"
    start rathole-client "$RATHOLE" -c "$OUT/rathole-client.toml"
fi
declare -A STARTUP_RSS
for shell in $SHELLS; do
    [[ " $SYSTEMS " == *" $shell "* ]] || continue
    # No admin plane: its default port (8081) would be taken by the first.
    start "$shell" "${BIN[$shell]}" both --upstream "http://127.0.0.1:$P_BACKEND" --listen "127.0.0.1:${PORT[$shell]}" \
        --admin-listen off
done
for system in $SYSTEMS; do
    wait_http "http://127.0.0.1:${PORT[$system]}/small" "$system"
done
# Startup RSS: the tunnel is up and has carried the one request above.
for shell in $SHELLS; do
    [[ " $SYSTEMS " == *" $shell "* ]] && STARTUP_RSS[$shell]=$(kib "$(pid_of "$shell")" VmRSS)
done

# Every system must hand back the exact bytes before it is timed.
for system in $SYSTEMS; do
    for f in small big; do
        curl -fsS "http://127.0.0.1:${PORT[$system]}/$f" -o "$OUT/check.$f"
        cmp -s "$OUT/check.$f" "$OUT/www/$f" || die "$system returned a different /$f"
    done
done

# --- load ---------------------------------------------------------------------

CELLS="small32 big32 small1"
RESULTS="$OUT/results.tsv"
printf 'round\tcell\tsystem\treq_per_s\tp50_us\tp99_us\terrors\n' >"$RESULTS"

cell_args() {
    case $1 in
    small32) echo "-t2 -c32 small" ;;
    big32) echo "-t2 -c32 big" ;;
    small1) echo "-t1 -c1 small" ;;
    esac
}

# wrk's --latency output to "req/s p50_us p99_us errors"
parse_wrk() {
    awk '
    function us(v) {
        if (v ~ /us$/) return v + 0
        if (v ~ /ms$/) return v * 1000
        if (v ~ /m$/) return v * 60e6
        if (v ~ /s$/) return v * 1e6
        return v
    }
    $1 == "50%" { p50 = us($2) }
    $1 == "99%" { p99 = us($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { err += $NF }
    /Socket errors:/ { for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) err += $i + 0 }
    END { printf "%s\t%.0f\t%.0f\t%d\n", rps, p50, p99, err }' "$1"
}

# CPU time of each process on a request's path, for the small responses at
# 32 connections: the tunnel's processes (user and system apart), the nginx
# backend's worker and wrk itself, in clock ticks (wrk's from the shell's
# `times`, as a child's; with PERF_SYSTEM, perf's own time falls in wrk's
# column for the cell it records). Throughput on this machine is CPU bound:
# these say where the two cores went.
CPU="$OUT/cpu.tsv"
printf 'round\tsystem\trequests\ttunnel_user\ttunnel_sys\tbackend\twrk\n' >"$CPU"
TICK=$(getconf CLK_TCK)
tunnel_pids() { # system
    case $1 in
    direct) ;;
    rathole) echo "$(pid_of rathole-server) $(pid_of rathole-client)" ;;
    nginx) pgrep -P "$(pid_of proxy)" | tr '\n' ' ' ;;
    *) pid_of "$1" ;;
    esac
}
ticks() { # pid...: "user sys" summed
    local u=0 s=0 a b
    for pid in "$@"; do
        read -r a b < <(awk '{ print $14, $15 }' "/proc/$pid/stat")
        u=$((u + a))
        s=$((s + b))
    done
    echo "$u $s"
}
children_ticks() { # sets CHILD_TICKS: the shell's children so far, user + sys
    # Run in this shell, not in `$(...)` or a pipeline: a subshell has no
    # children of its own.
    times >"$OUT/times"
    CHILD_TICKS=$(awk -v t="$TICK" 'NR == 2 {
        n = split($0, f, /[ ms]+/); s = 0
        for (i = 1; i + 1 <= n; i += 2) if (f[i] != "") s += f[i] * 60 + f[i + 1]
        printf "%.0f\n", s * t }' "$OUT/times")
}

run_wrk() { # round cell system
    read -r threads conns path <<<"$(cell_args "$2")"
    local log="$OUT/logs/wrk.$1.$2.$3.log" perf_pid=""
    local pids="" before=() backend0=0 wrk0=0
    if [ "$2" = small32 ]; then
        pids=$(tunnel_pids "$3")
        # shellcheck disable=SC2086 # one pid per word
        read -r -a before <<<"$(ticks $pids)"
        backend0=$(ticks "$BACKEND_WORKER" | awk '{ print $1 + $2 }')
        children_ticks
        wrk0=$CHILD_TICKS
    fi
    if [ "$3" = "$PERF_SYSTEM" ] && [ "$2" = "$PERF_CELL" ] && [ "$1" = 1 ]; then
        # shellcheck disable=SC2086 # PERF_CALL_GRAPH may be two words
        perf record $PERF_CALL_GRAPH -o "$OUT/perf.$3.$2.data" -p "$(pid_of "$3")" -- sleep "$DURATION" \
            >"$OUT/logs/perf.log" 2>&1 &
        perf_pid=$!
    fi
    wrk "$threads" "$conns" -d"${DURATION}s" --latency "http://127.0.0.1:${PORT[$3]}/$path" >"$log" 2>&1 ||
        die "wrk failed against $3 (see $log)"
    [ -z "$perf_pid" ] || wait "$perf_pid" || true
    local parsed
    parsed=$(parse_wrk "$log")
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$parsed" >>"$RESULTS"
    if [ "$2" = small32 ]; then
        local after=() backend1 wrk1
        # shellcheck disable=SC2086
        read -r -a after <<<"$(ticks $pids)"
        backend1=$(ticks "$BACKEND_WORKER" | awk '{ print $1 + $2 }')
        children_ticks
        wrk1=$CHILD_TICKS
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$3" \
            "$(awk -v r="${parsed%%$'\t'*}" -v d="$DURATION" 'BEGIN { printf "%.0f", r * d }')" \
            $((after[0] - before[0])) $((after[1] - before[1])) \
            $((backend1 - backend0)) $((wrk1 - wrk0)) >>"$CPU"
    fi
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average before: $LOAD_START; results in $OUT"
# Warm-up: one short run of each system, not counted.
for system in $SYSTEMS; do
    wrk -t2 -c32 -d1s "http://127.0.0.1:${PORT[$system]}/small" >/dev/null 2>&1 || true
done
read -r -a order <<<"$SYSTEMS"
for round in $(seq 1 "$ROUNDS"); do
    for cell in $CELLS; do
        for system in "${order[@]}"; do
            say "round $round/$ROUNDS  $cell  $system"
            run_wrk "$round" "$cell" "$system"
        done
    done
    # Each round starts with a different system, so none is always first.
    order=("${order[@]:1}" "${order[0]}")
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

declare -A BUSY_RSS IDLE_RSS PEAK_RSS
for shell in $SHELLS; do
    [[ " $SYSTEMS " == *" $shell "* ]] && BUSY_RSS[$shell]=$(kib "$(pid_of "$shell")" VmRSS)
done
say "waiting ${IDLE_WAIT}s for the idle RSS"
sleep "$IDLE_WAIT"
for shell in $SHELLS; do
    [[ " $SYSTEMS " == *" $shell "* ]] || continue
    IDLE_RSS[$shell]=$(kib "$(pid_of "$shell")" VmRSS)
    PEAK_RSS[$shell]=$(kib "$(pid_of "$shell")" VmHWM)
done
RSS="$OUT/rss.tsv"
printf 'process\tstartup_kib\tpeak_kib\tend_of_load_kib\tidle_kib\n' >"$RSS"
for shell in $SHELLS; do
    [[ " $SYSTEMS " == *" $shell "* ]] || continue
    printf '%s both\t%s\t%s\t%s\t%s\n' "$shell" "${STARTUP_RSS[$shell]}" "${PEAK_RSS[$shell]}" \
        "${BUSY_RSS[$shell]}" "${IDLE_RSS[$shell]}" >>"$RSS"
done

# --- 1 GiB through separate gateway and receiver processes --------------------

GIB="$OUT/gib.tsv"
printf 'shell\tseconds\tgateway_peak_kib\treceiver_peak_kib\n' >"$GIB"
if [ "$GIB_TEST" = 1 ]; then
    # The file is sparse: its first read fills 1 GiB of page cache with
    # zeros, which doubled the time of whichever shell went first (anpx
    # 3.4-4.3 s against 1.6-1.9 s warm). Read once straight from nginx.
    curl -sS -o /dev/null "http://127.0.0.1:$P_BACKEND/gib" || die "the backend did not serve /gib"
    for shell in anpx anpx-smol; do
        bin=$ANPX
        port=$P_GIB_GW
        if [ "$shell" = anpx-smol ]; then
            bin=$ANPX_SMOL
            port=$P_GIB_SMOL_GW
        fi
        start "gib-gw-$shell" "$bin" gateway --listen "127.0.0.1:$port" --admin-listen off
        sleep 0.3
        start "gib-rx-$shell" "$bin" receiver --gateway "ws://127.0.0.1:$port/ws" \
            --upstream "http://127.0.0.1:$P_BACKEND"
        wait_http "http://127.0.0.1:$port/small" "$shell gateway and receiver"
        say "1 GiB through $shell gateway and receiver"
        t0=$(date +%s.%N)
        size=$(curl -sS --max-time 300 -o /dev/null -w '%{size_download}' "http://127.0.0.1:$port/gib" || true)
        t1=$(date +%s.%N)
        gw=$(pid_of "gib-gw-$shell")
        rx=$(pid_of "gib-rx-$shell")
        if [ "$size" = 1073741824 ]; then
            seconds=$(python3 -c "print(round($t1 - $t0, 2))")
        else
            # Reported, not fatal: the speed and RSS figures above stand.
            seconds="FAILED after $size bytes (see $OUT/logs/gib-gw-$shell.log)"
        fi
        printf '%s\t%s\t%s\t%s\n' "$shell" "$seconds" "$(kib "$gw" VmHWM)" "$(kib "$rx" VmHWM)" >>"$GIB"
        kill "$gw" "$rx" 2>/dev/null || true
    done
fi

# --- summary ------------------------------------------------------------------

python3 - "$RESULTS" "$RSS" "$GIB" "$LOAD_START" "$LOAD_END" "$ROUNDS" "$DURATION" \
    "$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$CPU" "$TICK" "$BUILT" <<'EOF'
import csv, statistics, sys
results, rss, gib, load0, load1, rounds, duration, commit, cpu, tick, built = sys.argv[1:]
rows = list(csv.DictReader(open(results), delimiter="\t"))
lost = [r for r in rows if not r["req_per_s"]]
rows = [r for r in rows if r["req_per_s"]]
systems = list(dict.fromkeys(r["system"] for r in rows))
def med(cell, system, key):
    vals = [float(r[key]) for r in rows if r["cell"] == cell and r["system"] == system]
    return statistics.median(vals) if vals else float("nan")
def errs(system):
    return sum(int(r["errors"]) for r in rows if r["system"] == system)
def ratio(a, b):
    return f"{a / b:.2f}x" if b == b and b else "-"
print(f"\nanpx vs rathole, commit {commit}: {rounds} rounds of {duration} s per cell, medians")
print(f"anpx binaries: {built}")
print(f"load average before {load0}, after {load1}\n")
for r in lost:
    print(f"round {r['round']} {r['cell']} {r['system']}: no figures (wrk's output is empty), left out")
hdr = ("system", "small 32c req/s", "x rathole", "1 MiB 32c MiB/s", "x rathole",
       "1c p50 us", "+ direct", "1c p99 us", "errors")
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
has_rh = "rathole" in systems
for s in systems:
    s32 = med("small32", s, "req_per_s"); b32 = med("big32", s, "req_per_s")
    p50 = med("small1", s, "p50_us"); p99 = med("small1", s, "p99_us")
    d50 = med("small1", "direct", "p50_us") if "direct" in systems else float("nan")
    rh_s = med("small32", "rathole", "req_per_s") if has_rh else float("nan")
    rh_b = med("big32", "rathole", "req_per_s") if has_rh else float("nan")
    added = "" if s == "direct" or d50 != d50 else f"+{p50 - d50:.0f}"
    print(f"| {s} | {s32:,.0f} | {ratio(s32, rh_s)} | {b32:,.0f} | {ratio(b32, rh_b)} "
          f"| {p50:.0f} | {added} | {p99:.0f} | {errs(s)} |")
if "anpx" in systems and "anpx-smol" in systems:
    for cell, name in (("small32", "small 32c"), ("big32", "1 MiB 32c")):
        print(f"anpx-smol / anpx, {name}: {ratio(med(cell, 'anpx-smol', 'req_per_s'), med(cell, 'anpx', 'req_per_s'))}")
    print(f"anpx-smol / anpx, 1c p50 (lower is better): "
          f"{ratio(med('small1', 'anpx-smol', 'p50_us'), med('small1', 'anpx', 'p50_us'))}")
for s in systems:
    if s + "-before" in systems:
        b = s + "-before"
        print(f"{s} / {b}: small 32c {ratio(med('small32', s, 'req_per_s'), med('small32', b, 'req_per_s'))}, "
              f"1 MiB 32c {ratio(med('big32', s, 'req_per_s'), med('big32', b, 'req_per_s'))}, "
              f"1c p50 {med('small1', b, 'p50_us'):.0f} -> {med('small1', s, 'p50_us'):.0f} us")
print("\nper round (req/s; p50 us at 1 connection):")
for cell in ("small32", "big32", "small1"):
    key = "p50_us" if cell == "small1" else "req_per_s"
    for s in systems:
        vals = [r[key] for r in rows if r["cell"] == cell and r["system"] == s]
        print(f"  {cell:8} {s:10} " + " ".join(f"{float(v):>9,.0f}" for v in vals))
crows = [r for r in csv.DictReader(open(cpu), delimiter="\t") if int(r["requests"]) > 0]
if crows:
    print("\nCPU per request, small 32c (us; medians of the rounds): the tunnel's processes,"
          " the nginx backend's worker, wrk")
    print("| system | tunnel user | tunnel system | backend | wrk | all |")
    print("|---|---|---|---|---|---|")
    us = lambda r, k: int(r[k]) * 1e6 / int(tick) / int(r["requests"])
    for s in systems:
        mine = [r for r in crows if r["system"] == s]
        if not mine:
            continue
        m = lambda k: statistics.median(us(r, k) for r in mine)
        total = statistics.median(sum(us(r, k) for k in ("tunnel_user", "tunnel_sys", "backend", "wrk"))
                                  for r in mine)
        print(f"| {s} | {m('tunnel_user'):.1f} | {m('tunnel_sys'):.1f} | {m('backend'):.1f} "
              f"| {m('wrk'):.1f} | {total:.1f} |")
rrows = list(csv.DictReader(open(rss), delimiter="\t"))
if rrows:
    print("\nRSS (MiB): startup, peak (VmHWM), end of load, idle after the wait; idle / startup")
    for r in rrows:
        m = lambda k: int(r[k]) / 1024
        print(f"  {r['process']:12} {m('startup_kib'):7.1f} {m('peak_kib'):7.1f} "
              f"{m('end_of_load_kib'):7.1f} {m('idle_kib'):7.1f}   {m('idle_kib') / m('startup_kib'):.2f}x")
grows = list(csv.DictReader(open(gib), delimiter="\t"))
if grows:
    print("\n1 GiB through separate gateway and receiver processes: seconds, peak RSS (MiB)")
    for r in grows:
        print(f"  {r['shell']:10} {r['seconds']} s  gateway {int(r['gateway_peak_kib']) / 1024:6.1f}"
              f"  receiver {int(r['receiver_peak_kib']) / 1024:6.1f}")
EOF
