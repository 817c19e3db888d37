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

# The nginx backend of the per-request scripts: a 40-byte file (small) and a
# 1 MiB one (big) under $OUT/www, one worker listening on 127.0.0.1:$1, its
# configuration in $OUT/backend.conf. Started with
# `start backend "$NGINX" -c "$OUT/backend.conf" -p "$OUT"`.
backend_config() { # port
    mkdir -p "$OUT/www" "$OUT/backend.tmp"
    printf 'anpx benchmark: forty bytes of body.....' >"$OUT/www/small"
    head -c 1048576 /dev/urandom >"$OUT/www/big"
    chmod -R a+rX "$OUT/www"
    cat >"$OUT/backend.conf" <<EOF
worker_processes 1;
pid $OUT/backend.pid;
error_log $OUT/logs/backend.error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $OUT/backend.tmp;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$1;
        root $OUT/www;
        sendfile on;
        tcp_nopush on;
        open_file_cache max=16;
    }
}
EOF
}

# rathole's server and client configurations, $OUT/rathole-server.toml and
# $OUT/rathole-client.toml: the server's control port `ctrl`, its public
# port `port`, the client forwarding to 127.0.0.1:`backend`.
rathole_config() { # ctrl port backend
    cat >"$OUT/rathole-server.toml" <<EOF
[server]
bind_addr = "127.0.0.1:$1"
[server.services.bench]
token = "anpx-bench"
bind_addr = "127.0.0.1:$2"
EOF
    cat >"$OUT/rathole-client.toml" <<EOF
[client]
remote_addr = "127.0.0.1:$1"
[client.services.bench]
token = "anpx-bench"
local_addr = "127.0.0.1:$3"
EOF
}

# Waits until `url` answers 200; the script's `die` if it never does.
wait_http() { # url [what answers there, for the error]
    for _ in $(seq 1 600); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "${2:+$2: }no answer from $1 (logs in $OUT/logs)"
}
