# Sourced first by the benchmark scripts: their messages, the tools they
# install when missing, and the anpx binaries they measure. Needs $REPO.

say() { printf '%s\n' "$*" >&2; }
# The calling script's name prefixes its errors.
die() {
    say "$(basename "$0" .sh): $*"
    exit 1
}

# Sets OUT, unless given, to a new directory named for the calling script,
# with its logs/ inside; readable by all, because nginx's workers run as
# another user and read the files served from it.
run_dir() {
    OUT=${OUT:-$(mktemp -d "/tmp/anpx-$(basename "$0" .sh).XXXXXX")}
    mkdir -p "$OUT/logs"
    chmod 755 "$OUT"
}

# Installs Debian's `package` unless `command` is already there.
need() { # command package
    command -v "$1" >/dev/null && return 0
    command -v apt-get >/dev/null || die "$1 is missing and apt-get is not available: install $2"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    say "installing $2 (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=600 "$2" >&2
}

# Sets NGINX to nginx's path, installing Debian's nginx-light when there
# is none (its binary is in /usr/sbin, often not on a user's PATH).
find_nginx() {
    NGINX=$(command -v nginx || true)
    [ -n "$NGINX" ] || [ ! -x /usr/sbin/nginx ] || NGINX=/usr/sbin/nginx
    if [ -z "$NGINX" ]; then
        need nginx nginx-light
        NGINX=/usr/sbin/nginx
    fi
}

# Sets RATHOLE to rathole's path (BIN_RATHOLE when set), installing it with
# cargo when there is none. Its lock file pins a `time` that current Rust
# no longer compiles, so it is installed unlocked; only its TCP transport
# is used here.
find_rathole() {
    RATHOLE=${BIN_RATHOLE:-$(command -v rathole || true)}
    if [ -z "$RATHOLE" ] && [ -x "$HOME/.cargo/bin/rathole" ]; then RATHOLE="$HOME/.cargo/bin/rathole"; fi
    if [ -z "$RATHOLE" ]; then
        say "installing rathole (cargo install rathole --no-default-features --features server,client)"
        cargo install rathole --no-default-features --features server,client >&2 ||
            die "cargo install rathole failed"
        RATHOLE="$HOME/.cargo/bin/rathole"
    fi
}

# The path of the bench profile's `name` (anpx or anpx-smol): the
# environment variable `var` when it is set, else the workspace's build of
# the working tree (both binaries, built together so that a second call
# finds nothing to do; cargo rebuilds only what changed).
bench_binary() { # var name
    local var=$1 name=$2
    if [ -n "${!var:-}" ]; then
        [ -x "${!var}" ] || die "$var: no binary at ${!var}"
        echo "${!var}"
        return
    fi
    say "building $name (cargo build --profile bench)"
    # Line tables are enough for perf and callgrind and keep the build small.
    (cd "$REPO" && CARGO_PROFILE_BENCH_DEBUG=line-tables-only \
        cargo build --profile bench -p shell-tokio --bin anpx -p shell-smol --bin anpx-smol >&2) ||
        die "the build failed"
    # cargo keeps the `bench` profile's artifacts in target/release.
    echo "$(target_dir)/release/$name"
}

# The workspace's target directory, as cargo resolves it (CARGO_TARGET_DIR,
# a config file, or target/).
target_dir() {
    (cd "$REPO" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
}

# Writes to `file` a wrk script that ends wrk after `n` responses (wrk
# otherwise runs its whole duration even once its threads stop), and
# fails it on any status but 200.
stop_after_script() { # file n
    cat >"$1" <<EOF
local done = 0
function response(status, headers, body)
    if status ~= 200 then
        io.stderr:write("status " .. status .. "\\n")
        os.exit(1)
    end
    done = done + 1
    if done >= $2 then os.exit(0) end
end
EOF
}
