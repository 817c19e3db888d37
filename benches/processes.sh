# Sourced by the benchmark scripts: the processes a run starts, stopped
# when the script exits however it ends. Needs $OUT (logs go to $OUT/logs).

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts `command...` in the background with its output in
# $OUT/logs/<name>.log; its pid is in LAST_PID and, by name, in pid_of.
start() { # name command...
    local name=$1
    shift
    "$@" >"$OUT/logs/$name.log" 2>&1 &
    PIDS+=($!)
    LAST_PID=$!
    declare -g "PID_${name//-/_}=$!"
}
pid_of() { local v="PID_${1//-/_}"; echo "${!v}"; }
