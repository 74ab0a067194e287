# Shared helpers for the bench/*/run scripts (POSIX-ish bash; sourced).
#
# A script calls bench_init first: it makes the temporary directory
# ($BENCH_TMP), and installs a trap that stops, by pid, every process the
# script started through bench_start, on exit, error or Ctrl-C. Nothing is
# ever stopped by name.
#
# Settings from the environment (all optional):
#   SJ_BUILDDIR     the sunjammer build directory (balancerd/balancerd,
#                   cached/cached); default: the current directory
#   BENCH_DURATION  seconds of each measured wrk run (default 10)
#   BENCH_WARMUP    seconds of the unmeasured wrk run before it (default 2)
#   BENCH_CONNS     wrk connections (default 50)
#   BENCH_KEEP      keep the temporary directory (logs, configs) when set

BENCH_SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DURATION=${BENCH_DURATION:-10}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_CONNS=${BENCH_CONNS:-50}
BENCH_PIDS=()
BENCH_TMP=
CLK_TCK=$(getconf CLK_TCK)

bench_die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

bench_cleanup() {
    local pid
    trap - EXIT INT TERM
    for pid in "${BENCH_PIDS[@]}"; do
        bench_stop_pid "$pid"
    done
    if [ -n "$BENCH_TMP" ] && [ -d "$BENCH_TMP" ]; then
        if [ -n "${BENCH_KEEP:-}" ]; then
            echo "kept $BENCH_TMP" >&2
        else
            rm -rf "$BENCH_TMP"
        fi
    fi
}

bench_init() {
    local name=$1
    for tool in wrk curl taskset perl; do
        command -v "$tool" >/dev/null 2>&1 ||
            bench_die "$tool is missing: run bench/deps as root"
    done
    BENCH_TMP=$(mktemp -d "/tmp/sj-bench-$name-XXXXXX")
    # Daemons started as root drop to nobody; they must reach their files.
    chmod 0755 "$BENCH_TMP"
    trap bench_cleanup EXIT
    trap 'echo "interrupted" >&2; exit 130' INT TERM
}

# bench_stop_pid PID: SIGTERM, up to 5 s for it to go, then SIGKILL.
bench_stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "pid $pid did not stop on SIGTERM: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# bench_start NAME CMD...: starts CMD in the background with its output in
# $BENCH_TMP/NAME.log; sets BENCH_LAST_PID and remembers it for cleanup.
# When the script set BENCH_SERVER_CPU, CMD runs under taskset -c on that
# CPU (its children and threads inherit it); BENCH_WRK_CPU does the same
# for wrk.
bench_start() {
    local name=$1
    shift
    local pin=()
    [ -n "${BENCH_SERVER_CPU:-}" ] && pin=(taskset -c "$BENCH_SERVER_CPU")
    "${pin[@]}" "$@" >"$BENCH_TMP/$name.log" 2>&1 </dev/null &
    BENCH_LAST_PID=$!
    BENCH_PIDS+=("$BENCH_LAST_PID")
}

# bench_stop PID: stops one process started by bench_start and forgets it.
bench_stop() {
    local pid=$1 p keep=()
    bench_stop_pid "$pid"
    for p in "${BENCH_PIDS[@]}"; do
        [ "$p" = "$pid" ] || keep+=("$p")
    done
    BENCH_PIDS=("${keep[@]}")
}

# bench_free_port: a TCP port free on 127.0.0.1 right now.
bench_free_port() {
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1",
                                      LocalPort => 0, ReuseAddr => 1)
            or die "free port: $!\n";
        print $s->sockport, "\n";'
}

# bench_wait_port PORT PID [SECONDS]: waits until 127.0.0.1:PORT accepts,
# at most SECONDS (default 10); fails if PID dies first.
bench_wait_port() {
    local port=$1 pid=$2 limit=${3:-10} i
    for i in $(seq 1 $((limit * 20))); do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# bench_tool_bin NAME [FLAGS...]: prints the path of bench/NAME.cc built (one
# compiler call, with FLAGS) when the build directory has no up-to-date
# copy: the yardstick responder, the relay floor.
bench_tool_bin() {
    local name=$1
    shift
    local src="$BENCH_SRCDIR/$name.cc"
    local built="${SJ_BUILDDIR:-.}/bench/$name"
    if [ -x "$built" ] && [ "$built" -nt "$src" ]; then
        echo "$built"
        return
    fi
    local out="$BENCH_TMP/$name"
    ${CXX:-c++} -std=c++20 -O2 -o "$out" "$src" "$@" ||
        bench_die "cannot build $src"
    echo "$out"
}

# The flags that build bench/relay.cc with its io_uring mode, when
# liburing's header is installed (liburing-dev); none otherwise.
bench_uring_flags() {
    if echo '#include <liburing.h>' |
        ${CXX:-c++} -E -x c++ - >/dev/null 2>&1; then
        echo "-DRELAY_URING -luring"
    fi
}

# bench_tree PID: PID and all its descendants, one per line.
bench_tree() {
    local pid=$1 c
    echo "$pid"
    for c in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
        bench_tree "$c"
    done
}

# bench_cpu_ticks PID...: utime+stime of the processes, in clock ticks
# (fields 14 and 15 of /proc/PID/stat, counted after the command name,
# which may hold spaces).
bench_cpu_ticks() {
    local pid total=0 rest
    for pid in "$@"; do
        rest=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
        # After "pid (comm) " the fields start at 3 (state): utime is the
        # 12th of what is left, stime the 13th.
        set -- $rest
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

# bench_hwm_kib PID...: sum of VmHWM (peak resident set), in KiB.
bench_hwm_kib() {
    local pid total=0 v
    for pid in "$@"; do
        v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# bench_bounded SECONDS CMD...: runs CMD under `timeout`; returns its
# status, except that an interrupted CMD (Ctrl-C reaches the whole process
# group) ends the script: wrk and timeout exit normally with 130 on SIGINT,
# and bash then does not run the INT trap by itself.
bench_bounded() {
    local limit=$1 rc=0
    shift
    timeout --foreground -k 5 "$limit" "$@" || rc=$?
    case $rc in
    130 | 143) exit "$rc" ;;
    esac
    return "$rc"
}

# bench_warmup URL [wrk options...]: an unmeasured wrk run of
# $BENCH_WARMUP seconds. bench_wrk OUT URL [wrk options...]: the measured
# run with --latency, its output in OUT. Both bounded in time; both use
# $BENCH_WRK_CPU (a CPU list for taskset) when set.
bench_warmup() {
    local url=$1
    shift
    local pin=()
    [ -n "${BENCH_WRK_CPU:-}" ] && pin=(taskset -c "$BENCH_WRK_CPU")
    [ "$BENCH_WARMUP" -gt 0 ] || return 0
    bench_bounded $((BENCH_WARMUP + 15)) "${pin[@]}" wrk -t1 \
        -c"$BENCH_CONNS" -d"${BENCH_WARMUP}s" "$@" "$url" \
        >/dev/null 2>&1 || true
}

bench_wrk() {
    local out=$1 url=$2
    shift 2
    local pin=()
    [ -n "${BENCH_WRK_CPU:-}" ] && pin=(taskset -c "$BENCH_WRK_CPU")
    bench_bounded $((BENCH_DURATION + 30)) "${pin[@]}" wrk -t1 \
        -c"$BENCH_CONNS" -d"${BENCH_DURATION}s" --latency "$@" "$url" \
        >"$out" 2>&1 ||
        { echo "wrk failed on $url:" >&2; cat "$out" >&2; return 1; }
}

# bench_wrk_field OUT FIELD: one number from wrk's output: requests,
# rps, p50, p99 (latencies in microseconds), errors (socket errors plus
# non-2xx/3xx responses).
bench_wrk_field() {
    local out=$1 field=$2
    awk -v field="$field" '
        function us(v) {
            if (v ~ /us$/) return v + 0
            if (v ~ /ms$/) return (v + 0) * 1000
            if (v ~ /s$/)  return (v + 0) * 1000000
            return v + 0
        }
        / requests in / { requests = $1 }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = us($2) }
        $1 == "99%" { p99 = us($2) }
        /Non-2xx or 3xx responses:/ { errors += $NF }
        /Socket errors:/ {
            for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) errors += $i + 0
        }
        END {
            if (field == "requests") print requests + 0
            else if (field == "rps") printf "%.0f\n", rps
            else if (field == "p50") printf "%.0f\n", p50
            else if (field == "p99") printf "%.0f\n", p99
            else if (field == "errors") print errors + 0
        }' "$out"
}

# bench_ratio A B: A/B with two decimals, or "n/a".
bench_ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "" || b == "" || a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ ||
            b + 0 == 0)
            print "n/a"
        else
            printf "%.2f\n", a / b
    }'
}

# bench_machine: one line naming the machine.
bench_machine() {
    local model
    model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    echo "$(nproc) CPUs, ${model:-unknown CPU}, $(uname -sr)," \
        "$(date -u +%Y-%m-%d)"
}

# bench_load: the 1, 5 and 15 minute load averages. Printed before and
# after a run: other work on the machine (a build) skews the numbers.
bench_load() {
    cut -d' ' -f1-3 /proc/loadavg
}

# bench_nginx_conf DIR PORT ROOT [EXTRA_HTTP] [EXTRA_SERVER]: writes
# DIR/nginx.conf for an nginx serving ROOT on 127.0.0.1:PORT, everything
# (pid, logs, temp files) inside DIR.
bench_nginx_conf() {
    local dir=$1 port=$2 root=$3 http_extra=${4:-} server_extra=${5:-}
    mkdir -p "$dir"
    chmod 0755 "$dir"
    cat >"$dir/nginx.conf" <<EOF
worker_processes ${BENCH_NGINX_WORKERS:-1};
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy_temp;
    fastcgi_temp_path $dir/fastcgi_temp;
    uwsgi_temp_path $dir/uwsgi_temp;
    scgi_temp_path $dir/scgi_temp;
    keepalive_requests 1000000;
    $http_extra
    server {
        listen 127.0.0.1:$port;
        root $root;
        $server_extra
    }
}
EOF
}

# bench_nginx_start NAME DIR PORT: starts nginx on DIR/nginx.conf (already
# written), waits for its port; sets BENCH_LAST_PID (the master).
bench_nginx_start() {
    local name=$1 dir=$2 port=$3
    bench_start "$name" nginx -e "$dir/error.log" -p "$dir" \
        -c "$dir/nginx.conf"
    bench_wait_port "$port" "$BENCH_LAST_PID" ||
        bench_die "$name did not start: $(cat "$BENCH_TMP/$name.log" \
            "$dir/error.log" 2>/dev/null)"
}
