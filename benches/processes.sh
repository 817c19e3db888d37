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

# An nginx configuration, $OUT/<name>.conf: `workers` worker processes,
# its pid, error log and temporary files under $OUT, keep-alive without
# limits, and `server-block` (text) inside its http block.
nginx_conf() { # name workers server-block
    mkdir -p "$OUT/$1.tmp" "$OUT/logs"
    cat >"$OUT/$1.conf" <<EOF
worker_processes $2;
pid $OUT/$1.pid;
error_log $OUT/logs/$1.error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $OUT/$1.tmp;
    proxy_temp_path $OUT/$1.tmp;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
    $3
}
EOF
}

# The nginx backend every script measures through: a 40-byte file (small)
# and a 1 MiB one (big) under $OUT/www, one worker listening on
# 127.0.0.1:$1, its configuration in $OUT/backend.conf. Started with
# `start backend "$NGINX" -c "$OUT/backend.conf" -p "$OUT"`.
backend_config() { # port
    mkdir -p "$OUT/www"
    printf 'anpx benchmark: forty bytes of body.....' >"$OUT/www/small"
    [ "$(stat -c %s "$OUT/www/small")" = 40 ] || die "small body is not 40 bytes"
    head -c 1048576 /dev/urandom >"$OUT/www/big"
    chmod -R a+rX "$OUT/www"
    nginx_conf backend 1 "server {
        listen 127.0.0.1:$1;
        root $OUT/www;
        sendfile on;
        tcp_nopush on;
        open_file_cache max=16;
    }"
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
