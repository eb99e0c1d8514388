#!/usr/bin/env bash
# bench/run.sh - raidad against the ceiling server (bench/ceiling.c: one
# thread, one epoll loop, no checks: the most this machine can do).
#
# Builds raidad optimised (out of tree, in build-bench/), builds the
# ceiling, then for TCP and UDP at each concurrency runs raida-bench against
# raidad and against the ceiling, interleaved, each server fresh on its own
# free port of 127.0.0.1. Prints a markdown table with the ratios raidad /
# ceiling and marks the rows that miss the targets; then the coin rows:
# raidad serving a data directory made by raida-coins, TCP at 64 requests
# in flight, echo against detect (1 and 50 coins a request), pown (one coin)
# and pown with every fsync/fdatasync slowed by 2 ms (bench/fsync-delay.c),
# with the ratios to echo and, for pown, the requests per sync (the shim,
# preloaded in every pown row, counts the syncs), and pown with the coins
# in memory (tmpfs), alone and beside another process's disk syncs
# (bench/sync-load.c) (all skipped, saying so, when raidad answers group 1
# with status 5 or 6); then measures raidad's memory per idle connection
# and the most idle connections it holds.
#
# Settings (environment):
#   BENCH_SECONDS=5          length of each run
#   BENCH_WORKERS="auto 1"   raidad worker_processes: the table runs raidad
#                            once with each (interleaved with the ceiling),
#                            and compares the first one's CPU per request
#                            with the others'; the rows after the table use
#                            the first
#   BENCH_WORKER_THREADS=    raidad worker_threads (default: raidad's)
#   BENCH_COMMIT_THREADS=    raidad commit_threads (default: raidad's)
#   BENCH_CPU_AFFINITY=      raidad worker_cpu_affinity, "auto" or "off"
#                            (default: raidad's)
#   BENCH_SCHED_BATCH=       raidad worker_sched_batch, true or false
#                            (default: raidad's, true); the ceiling runs
#                            SCHED_BATCH too unless it is false
#   BENCH_CONCURRENCY="1 16 64 256"
#   BENCH_TCP_THREADS=2      raida-bench -t for TCP: one client thread
#                            saturates a core at about 24k connections/s,
#                            below what the servers do
#   BENCH_UDP_THREADS=1      raida-bench -t for UDP: a second client thread
#                            only takes the CPU the server needs
#   BENCH_REPEAT=1           runs per row; the table shows the medians
#   BENCH_IDLE=10000         connections held for the memory measurement (0: skip)
#   BENCH_MAX_IDLE=1         1: also find the most idle connections (0: skip)
#   BENCH_TABLE=1            0: skip the raidad / ceiling table
#   BENCH_COINS=4096         coins issued for the coin rows (0: skip them)
#   BENCH_SYNC_DELAY_US=2000 the slowed sync of the "syncs +" coin row
#   BENCH_MEM_DIR=/dev/shm   a tmpfs where the "in memory" coin rows keep
#                            their copy of the coins ("": skip those rows)
#   BENCH_SYNC_LOAD=1500     syncs a second bench/sync-load.c makes beside
#                            the last coin row (0: skip that row)
#   BENCH_SYNC_LOAD_DIR=/var/tmp  where it writes (a disk, not a tmpfs)
#   BENCH_ACCESS_LOG=1       1: also measure the access log's cost: TCP echo
#                            at BENCH_ACCESS_LOG_CONNS=64, log off, plain, json
#   BENCH_BUILD_DIR=<top>/build-bench
#
# Only 127.0.0.1 is ever targeted. Every server started is stopped, by
# process id, on any exit.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
seconds=${BENCH_SECONDS:-5}
worker_sets=${BENCH_WORKERS:-auto 1}
workers=${worker_sets%% *}
worker_threads=${BENCH_WORKER_THREADS:-}
commit_threads=${BENCH_COMMIT_THREADS:-}
cpu_affinity=${BENCH_CPU_AFFINITY:-}
sched_batch=${BENCH_SCHED_BATCH:-}
concurrency=${BENCH_CONCURRENCY:-1 16 64 256}
tcp_threads=${BENCH_TCP_THREADS:-2}
udp_threads=${BENCH_UDP_THREADS:-1}
repeat=${BENCH_REPEAT:-1}
idle_conns=${BENCH_IDLE:-10000}
max_idle=${BENCH_MAX_IDLE:-1}
access_log=${BENCH_ACCESS_LOG:-1}
access_log_conns=${BENCH_ACCESS_LOG_CONNS:-64}
build=${BENCH_BUILD_DIR:-$top/build-bench}
table=${BENCH_TABLE:-1}
coin_count=${BENCH_COINS:-4096}
sync_delay_us=${BENCH_SYNC_DELAY_US:-2000}
mem_dir=${BENCH_MEM_DIR-/dev/shm}
sync_load=${BENCH_SYNC_LOAD:-1500}
sync_load_dir=${BENCH_SYNC_LOAD_DIR:-/var/tmp}
host=127.0.0.1
clk_tck=$(getconf CLK_TCK)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/raidad-bench.XXXXXX")
# Workers started as root run as an unprivileged account: they must reach
# the coin folder in here.
chmod 755 "$tmp"
servers=""      # process ids of every server started, for the trap
bench_pid=""    # the raida-bench running, if any
load_pid=""     # the sync-load running, if any
mem_coins=""    # the in-memory copy of the coins, if made
idle_pid=""

log() { printf '%s\n' "$*" >&2; }
die() { log "run.sh: $*"; exit 1; }

# ---- processes ------------------------------------------------------------

stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in $bench_pid $load_pid $idle_pid $servers; do
        stop_pid "$pid"
    done
    rm -rf "$tmp" ${mem_coins:+"$mem_coins"}
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs raida-bench ARGS... with its output in $tmp/bench.out. In the
# background and waited for: a signal to this script interrupts "wait" at
# once (a foreground child would delay the trap until it ends, and bash
# drops an INT its child survived).
run_bench() {
    local rc=0
    "$build/raida-bench" "$@" >"$tmp/bench.out" &
    bench_pid=$!
    wait "$bench_pid" || rc=$?
    bench_pid=""
    return "$rc"
}

# The process and its children (raidad: the master and its workers).
proc_tree() {
    local pid=$1
    echo "$pid"
    if compgen -G "/proc/$pid/task/*/children" >/dev/null; then
        cat /proc/"$pid"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -v '^$' || true
    else
        pgrep -P "$pid" || true
    fi
}

# utime + stime of every thread of the tree, in clock ticks. The fields
# are counted after the ")" that ends the command name (which may hold
# spaces): utime and stime are the 12th and 13th there.
cpu_ticks() {
    local total=0 p t
    for p in $(proc_tree "$1"); do
        t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

# VmRSS of the tree, in kB.
rss_kb() {
    local total=0 p k
    for p in $(proc_tree "$1"); do
        k=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || k=0
        total=$((total + ${k:-0}))
    done
    echo "$total"
}

# Descriptors open in the tree.
fd_count() {
    local total=0 p n
    for p in $(proc_tree "$1"); do
        n=$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) || n=0
        total=$((total + n))
    done
    echo "$total"
}

# A port free for TCP and UDP on 127.0.0.1 (the kernel's pick for TCP).
free_port() {
    python3 - <<'EOF'
import socket
for _ in range(50):
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        u.close()
        t.close()
    print(port)
    break
EOF
}

# ---- servers --------------------------------------------------------------

# write_conf PORT [EXTRA LINE...]
write_conf() {
    local port=$1 conf=$tmp/raidad-$1.conf
    shift
    {
        echo "listen = \"$host:$port\";"
        if [ "$workers" = auto ]; then
            echo 'worker_processes = "auto";'
        else
            echo "worker_processes = $workers;"
        fi
        [ -n "$worker_threads" ] && echo "worker_threads = $worker_threads;"
        [ -n "$commit_threads" ] && echo "commit_threads = $commit_threads;"
        [ -n "$cpu_affinity" ] && echo "worker_cpu_affinity = \"$cpu_affinity\";"
        [ -n "$sched_batch" ] && echo "worker_sched_batch = $sched_batch;"
        echo 'log_level = "warn";'
        echo "pid_file = \"$tmp/raidad-$port.pid\";"
        local line
        for line in "$@"; do echo "$line"; done
    } >"$conf"
    echo "$conf"
}

# Waits until the server on PORT answers an echo (10 s at most).
wait_ready() {
    local port=$1 pid=$2 i
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 1
        "$build/raida-cli" -t 200 "$host" "$port" echo >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# start_server KIND PORT [NOFILE]: KIND raidad or ceiling; sets server_pid.
# The raidad configuration may carry extra lines in $extra_conf (an array),
# its environment extra variables in $server_env (NAME=VALUE, an array).
server_env=()
start_server() {
    local kind=$1 port=$2 nofile=${3:-} conf
    if [ "$kind" = raidad ]; then
        conf=$(write_conf "$port" "${extra_conf[@]}")
        set -- env "${server_env[@]}" "$build/raidad" -c "$conf"
    else
        # The ceiling runs with the scheduling policy raidad's workers have
        # (worker_sched_batch, true unless BENCH_SCHED_BATCH=false): the
        # policy alone changes the CPU per request of both.
        if [ "$sched_batch" = false ]; then
            set -- "$build/ceiling" "$port"
        else
            set -- chrt -b 0 "$build/ceiling" "$port"
        fi
    fi
    if [ -n "$nofile" ]; then
        (ulimit -n "$nofile" && exec "$@") >>"$tmp/$kind.log" 2>&1 &
    else
        "$@" >>"$tmp/$kind.log" 2>&1 &
    fi
    server_pid=$!
    servers="$servers $server_pid"
    wait_ready "$port" "$server_pid" ||
        { tail -5 "$tmp/$kind.log" >&2; die "$kind did not start on port $port"; }
}

stop_server() {
    stop_pid "$1"
    servers=$(echo "$servers" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ' || true)
}

# ---- build ----------------------------------------------------------------

build_all() {
    [ -x "$top/configure" ] || die "no configure script: run autoreconf -fi in $top"
    mkdir -p "$build"
    (
        cd "$build"
        [ -f Makefile ] || "$top/configure" -q CFLAGS="-O2 -g"
        make -s -j"$(nproc)" raidad raida-bench raida-cli raida-coins
    ) >&2
    cc -O2 -g -Wall -Wextra -o "$build/ceiling" "$top/bench/ceiling.c"
    cc -O2 -g -Wall -Wextra -shared -fPIC -o "$build/fsync-delay.so" \
        "$top/bench/fsync-delay.c" -ldl
    cc -O2 -g -Wall -Wextra -o "$build/sync-load" "$top/bench/sync-load.c"
}

# ---- one row --------------------------------------------------------------

# json_field JSON NAME: a number from raida-bench -j output.
json_field() {
    printf '%s' "$1" | sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p"
}

# run_row KIND PROTO CONNS: sets row=(rps p50 p99 cpu_us_per_request errors).
# raida-bench gets the extra arguments $bench_extra, raidad the extra
# configuration lines $row_conf and environment $row_env (arrays).
# Runs in this shell, never in $(...): the server it starts must be known
# to the trap.
bench_extra=()
row_conf=()
row_env=()
run_row() {
    local kind=$1 proto=$2 conns=$3 out before after ok errs cpu
    local -a flags=(-q -j -d "$seconds" -c "$conns" -t "$tcp_threads")
    [ "$proto" = udp ] && flags=(-q -j -d "$seconds" -c "$conns" -t "$udp_threads" -u)
    flags+=("${bench_extra[@]}")
    port=$(free_port)
    [ -n "$port" ] || die "no free port"
    extra_conf=("${row_conf[@]}")
    server_env=("${row_env[@]}")
    start_server "$kind" "$port"
    server_env=()
    before=$(cpu_ticks "$server_pid")
    run_bench "${flags[@]}" "$host" "$port" ||
        log "run.sh: raida-bench reported bad answers from $kind ($proto, $conns)"
    out=$(cat "$tmp/bench.out")
    after=$(cpu_ticks "$server_pid")
    stop_server "$server_pid"
    ok=$(json_field "$out" ok)
    errs=$(printf '%s' "$out" | sed -n 's/.*"errors":{\([^}]*\)}.*/\1/p' |
           tr ',' '\n' | awk -F: '{ s += $2 } END { print s + 0 }')
    cpu=$(awk -v t=$((after - before)) -v hz="$clk_tck" -v n="${ok:-0}" \
          'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "-" }')
    row=("$(json_field "$out" requests_per_s)" "$(json_field "$out" p50)"
         "$(json_field "$out" p99)" "$cpu" "$errs")
    local i
    for i in 0 1 2; do row[i]=${row[i]:--}; done
}

# Extra raidad configuration lines for run_row (the access log rows).
row_conf=()

# ---- the table ------------------------------------------------------------

# ratio A B
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a == a + 0) printf "%.2f", a / b; else print "-" }'
}

# verdict PROTO CONNS RPS_RATIO P99_RATIO CPU_RATIO: the targets at 64,
# the same for TCP and UDP and for any worker count.
verdict() {
    local conns=$2
    [ "$conns" = 64 ] || { echo ""; return; }
    awk -v r="$3" -v l="$4" -v c="$5" 'BEGIN {
        miss = ""
        if (r == "-" || r < 0.95) miss = miss " rps<0.95x"
        if (l == "-" || l > 1.3) miss = miss " p99>1.3x"
        if (c == "-" || c > 1.1) miss = miss " cpu>1.1x"
        print miss == "" ? "meets targets" : "**MISS**" miss
    }'
}

# workers_label SET: "auto (N)" or the number.
workers_label() {
    if [ "$1" = auto ]; then echo "auto ($(nproc))"; else echo "$1"; fi
}

# median VALUE...: the middle value ("-" values are left out).
median() {
    # grep finds nothing when every value is "-": not an error (pipefail).
    printf '%s\n' "$@" | { grep -v '^-$' || true; } | sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
              else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# measure KIND PROTO CONNS: sets med=(rps p50 p99 cpu errors), the median
# of BENCH_REPEAT runs (errors summed). Runs alternate with the other
# server's through the caller, so that both see the same noise.
declare -A runs
record_run() {
    local key=$1 i
    for i in 0 1 2 3; do runs[$key,$i]="${runs[$key,$i]:-} ${row[i]}"; done
    runs[$key,4]=$(( ${runs[$key,4]:-0} + ${row[4]:-0} ))
}

medians() {
    local key=$1 i
    med=()
    # shellcheck disable=SC2086  # the lists are meant to split
    for i in 0 1 2 3; do med+=("$(median ${runs[$key,$i]})"); done
    med+=("${runs[$key,4]}")
}

# One row per raidad worker count, then the ceiling's; every run of a
# row's servers is interleaved with the others', so that all see the same
# noise. After the table, each worker count's CPU per request against the
# first's (BENCH_WORKERS: "auto 1" compares the default with one worker).
bench_table() {
    local proto conns r c rr lr cr set first
    local -a cpu_lines=()
    echo "| proto | conns | server | workers | req/s | p50 µs | p99 µs | CPU µs/req | errors | rps ratio | p99 ratio | CPU ratio | targets (at 64) |"
    echo "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for proto in tcp udp; do
        for conns in $concurrency; do
            for _ in $(seq "$repeat"); do
                for set in $worker_sets; do
                    workers=$set
                    run_row raidad "$proto" "$conns"
                    log "  $proto c=$conns raidad ($set): ${row[*]}"
                    record_run "raidad $set,$proto,$conns"
                done
                run_row ceiling "$proto" "$conns"
                log "  $proto c=$conns ceiling: ${row[*]}"
                record_run "ceiling,$proto,$conns"
            done
            medians "ceiling,$proto,$conns"
            c=("${med[@]}")
            first=""
            for set in $worker_sets; do
                medians "raidad $set,$proto,$conns"
                r=("${med[@]}")
                rr=$(ratio "${r[0]}" "${c[0]}")
                lr=$(ratio "${r[2]}" "${c[2]}")
                cr=$(ratio "${r[3]}" "${c[3]}")
                echo "| $proto | $conns | raidad | $(workers_label "$set") | ${r[0]} | ${r[1]} | ${r[2]} | ${r[3]} | ${r[4]} | $rr | $lr | $cr | $(verdict "$proto" "$conns" "$rr" "$lr" "$cr") |"
                if [ -z "$first" ]; then
                    first=$set
                    fcpu=${r[3]}
                else
                    cpu_lines+=("$proto, $conns: CPU per request with $(workers_label "$first") workers / with $(workers_label "$set"): $(ratio "$fcpu" "${r[3]}") ($fcpu / ${r[3]} µs)")
                fi
            done
            echo "| $proto | $conns | ceiling | 1 thread | ${c[0]} | ${c[1]} | ${c[2]} | ${c[3]} | ${c[4]} | | | | |"
        done
    done
    if [ "${#cpu_lines[@]}" -gt 0 ]; then
        echo
        printf -- '- %s\n' "${cpu_lines[@]}"
    fi
    workers=${worker_sets%% *}
}

# ---- coin rows ------------------------------------------------------------

coin_dir=$tmp/coins
coin_list=$tmp/coins/coins.txt
serve_dir=$coin_dir     # the folder coin_row serves
# raidad's environment in the pown rows: the shim counts the syncs.
counting_syncs=("LD_PRELOAD=$build/fsync-delay.so" "FSYNC_DELAY_US=0" "FSYNC_DELAY_REPORT=1")

# Sets group1 to the status raidad answers a detect of the list's first
# coin with ("" for no answer). In this shell: see run_row.
group1_status() {
    local port
    port=$(free_port)
    extra_conf=("data_dir = \"$coin_dir\";")
    start_server raidad "$port"
    "$build/raida-cli" -L "$coin_list" "$host" "$port" detect 0 >"$tmp/group1.out" 2>&1 || true
    group1=$(sed -n 's/^status: \([0-9]*\).*/\1/p' "$tmp/group1.out")
    stop_server "$server_pid"
}

# coin_row NAME RAIDA_BENCH_ARGS...: one row of raidad serving the coins,
# TCP at 64 requests in flight; the medians under "coins,NAME". With
# $row_env preloading the fsync-delay shim (FSYNC_DELAY_REPORT=1), the
# requests per sync too: the answers counted by raida-bench over the
# fsync/fdatasync calls the shim counted in every raidad process (the
# journal's syncs, and the few of the start, the checkpoints and the stop).
coin_row() {
    local name=$1 lines syncs ok per
    shift
    bench_extra=("$@")
    row_conf=("data_dir = \"$serve_dir\";")
    lines=$(wc -l 2>/dev/null <"$tmp/raidad.log" || echo 0)
    run_row raidad tcp 64
    per=-
    if [[ " ${row_env[*]} " == *" FSYNC_DELAY_REPORT=1 "* ]]; then
        syncs=$(tail -n +"$((lines + 1))" "$tmp/raidad.log" |
                sed -n 's/^fsync-delay: process [0-9]* delayed \([0-9]*\) syncs.*/\1/p' |
                awk '{ s += $1 } END { print s + 0 }')
        ok=$(json_field "$(cat "$tmp/bench.out")" ok)
        per=$(ratio "${ok:-0}" "$syncs")
    fi
    log "  coins $name: ${row[*]} requests/sync $per"
    record_run "coins,$name"
    runs[coins,$name,5]="${runs[coins,$name,5]:-} $per"
    bench_extra=()
    row_conf=()
    row_env=()
}

# Copies the coins into a tmpfs under $mem_dir, for the "in memory" rows:
# the pown path's own cost, without the disk's. mem_coins stays empty (the
# rows are skipped) where there is no tmpfs.
coins_in_memory() {
    [ -n "$mem_dir" ] || return 0
    if [ "$(stat -f -c %T "$mem_dir" 2>/dev/null)" != tmpfs ]; then
        log "run.sh: $mem_dir is not a tmpfs: the in-memory coin rows are skipped"
        return 0
    fi
    mem_coins=$(mktemp -d "$mem_dir/raidad-bench-coins.XXXXXX")
    chmod 755 "$mem_coins"
    cp -a "$coin_dir" "$mem_coins/coins"
}

# The in-memory pown rows, alone and beside sync-load's disk syncs.
coin_rows_in_memory() {
    local list=$mem_coins/coins/coins.txt
    serve_dir=$mem_coins/coins
    row_env=("${counting_syncs[@]}")
    coin_row "pown, in memory" -m pown -L "$list"
    if [ "$sync_load" -gt 0 ]; then
        [ "$(stat -f -c %T "$sync_load_dir" 2>/dev/null)" = tmpfs ] &&
            log "run.sh: $sync_load_dir is a tmpfs: sync-load's syncs reach no disk there"
        # Longer than the row: it is stopped, by process id, when the row ends.
        "$build/sync-load" "$sync_load_dir/raidad-bench-sync.$$" "$sync_load" \
            $((seconds + 60)) >/dev/null &
        load_pid=$!
        row_env=("${counting_syncs[@]}")
        coin_row "pown, in memory, $sync_load syncs/s beside" -m pown -L "$list"
        stop_pid "$load_pid"
        load_pid=""
    fi
    serve_dir=$coin_dir
}

coin_table() {
    local name e r rr lr cr
    local -a names=(echo "detect x1" "detect x50" pown "pown, syncs +${sync_delay_us} us")
    "$build/raida-coins" -q -d 1 -n "$coin_count" "$coin_dir" >&2 ||
        die "raida-coins could not make $coin_dir"
    # The coin store writes there as the workers' account, and refuses a
    # folder that account does not own (raidad, or nobody where it is missing).
    if [ "$(id -u)" = 0 ]; then
        local account=nobody
        getent passwd raidad >/dev/null && account=raidad
        chown -R "$account:" "$coin_dir"
    fi
    group1_status
    case $group1 in
    5 | 6)
        echo "Coin rows skipped: raidad answers a detect with status $group1" \
             "(this build has no authentication group)."
        return 0 ;;
    241) ;;
    *)
        sed 's/^/    /' "$tmp/group1.out" >&2
        die "a detect of a coin raida-coins issued did not pass (status ${group1:-none})" ;;
    esac
    coins_in_memory
    if [ -n "$mem_coins" ]; then
        names+=("pown, in memory")
        [ "$sync_load" -gt 0 ] && names+=("pown, in memory, $sync_load syncs/s beside")
    fi
    for _ in $(seq "$repeat"); do
        coin_row echo
        coin_row "detect x1" -m detect -N 1 -L "$coin_list"
        coin_row "detect x50" -m detect -N 50 -L "$coin_list"
        row_env=("${counting_syncs[@]}")
        coin_row pown -m pown -L "$coin_list"
        row_env=("LD_PRELOAD=$build/fsync-delay.so" "FSYNC_DELAY_US=$sync_delay_us"
                 "FSYNC_DELAY_REPORT=1")
        coin_row "pown, syncs +${sync_delay_us} us" -m pown -L "$coin_list"
        [ -z "$mem_coins" ] || coin_rows_in_memory
    done
    medians "coins,echo"
    e=("${med[@]}")
    echo "| request (tcp, 64) | req/s | p50 µs | p99 µs | CPU µs/req | errors | rps / echo | p99 / echo | CPU / echo | requests / sync |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for name in "${names[@]}"; do
        medians "coins,$name"
        r=("${med[@]}")
        rr=$(ratio "${r[0]}" "${e[0]}")
        lr=$(ratio "${r[2]}" "${e[2]}")
        cr=$(ratio "${r[3]}" "${e[3]}")
        # shellcheck disable=SC2086  # the list is meant to split
        echo "| $name | ${r[0]} | ${r[1]} | ${r[2]} | ${r[3]} | ${r[4]} | $rr | $lr | $cr | $(median ${runs[coins,$name,5]:-}) |"
    done
}

# ---- idle connections -----------------------------------------------------

# hold_idle CONNS HOLD_SECONDS: starts raida-bench -i in the background,
# waits until every connection is settled and the server holds them;
# sets idle_pid, idle_out.
hold_idle() {
    local conns=$1 hold=$2 base=$3 i
    idle_out=$tmp/idle.$conns
    "$build/raida-bench" -i -j -c "$conns" -d "$hold" "$host" "$port" \
        >"$idle_out" 2>"$idle_out.err" &
    idle_pid=$!
    for i in $(seq 300); do
        grep -q '^holding' "$idle_out.err" 2>/dev/null && break
        kill -0 "$idle_pid" 2>/dev/null || break
        sleep 0.1
    done
    # The client's handshake completes in the kernel; wait for the server
    # to have accepted them too (or to stop gaining).
    local last=-1 now
    for i in $(seq 50); do
        now=$(fd_count "$server_pid")
        [ $((now - base)) -ge "$conns" ] && break
        [ "$now" -eq "$last" ] && [ "$i" -gt 5 ] && break
        last=$now
        sleep 0.2
    done
}

# raidad closes a connection that sends nothing within socket_timeout_ms:
# raised here so that the idle ones stay.
idle_conf=('socket_timeout_ms = 3600000;')

memory_per_connection() {
    local before after fds0 fds1 est
    port=$(free_port)
    extra_conf=("${idle_conf[@]}")
    start_server raidad "$port" "$(ulimit -Hn)"
    sleep 0.3
    before=$(rss_kb "$server_pid")
    fds0=$(fd_count "$server_pid")
    hold_idle "$idle_conns" $((seconds + 20)) "$fds0"
    after=$(rss_kb "$server_pid")
    fds1=$(fd_count "$server_pid")
    stop_pid "$idle_pid"
    idle_pid=""
    stop_server "$server_pid"
    est=$(json_field "$(cat "$idle_out")" established)
    echo "| idle connections asked | $idle_conns |"
    echo "| established (client) | ${est:-?} |"
    echo "| descriptors gained by raidad | $((fds1 - fds0)) |"
    echo "| raidad RSS before / after | $before kB / $after kB |"
    echo "| RSS per idle connection | $(awk -v a="$after" -v b="$before" -v n=$((fds1 - fds0)) \
        'BEGIN { if (n > 0) printf "%.0f bytes", (a - b) * 1024 / n; else print "-" }') |"
}

# Client and server each get the hard limit (it is per process): the
# client asks for almost that many, and raidad holds what it can.
max_idle_connections() {
    local hard conns fds0 fds1 est held
    hard=$(ulimit -Hn)
    conns=$((hard - 32))     # raida-bench keeps 32 descriptors for itself
    port=$(free_port)
    extra_conf=("${idle_conf[@]}")
    start_server raidad "$port" "$hard"
    sleep 0.3
    fds0=$(fd_count "$server_pid")
    hold_idle "$conns" $((seconds + 25)) "$fds0"
    fds1=$(fd_count "$server_pid")
    sleep 1
    stop_pid "$idle_pid"
    idle_pid=""
    stop_server "$server_pid"
    est=$(json_field "$(cat "$idle_out")" established)
    held=$(json_field "$(cat "$idle_out")" held)
    echo "| descriptor hard limit (client and server each) | $hard |"
    echo "| idle connections asked | $conns |"
    echo "| established (client), still open at the end | ${est:-?}, ${held:-?} |"
    echo "| connections raidad holds (descriptors gained) | $((fds1 - fds0)) |"
    grep -i 'connections\|descriptor\|accept' "$tmp/raidad.log" | tail -1 |
        sed 's/^[^]]*\] [0-9]*: /| raidad said | /; s/$/ |/' || true
}

# ---- the access log's cost --------------------------------------------------

# TCP echo with the access log off, then on (plain, json): the CPU per
# request the log adds, and whether it wrote one line per request (the
# workers write their buffers out as they stop).
access_log_cost() {
    local mode lines base="" extra
    echo "| access log | req/s | p99 µs | CPU µs/req | CPU added µs/req | errors | lines written |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for mode in off plain json; do
        row_conf=()
        rm -f "$tmp/access.log"
        [ "$mode" = off ] ||
            row_conf=("access_log = \"$tmp/access.log\";" "access_log_format = \"$mode\";")
        run_row raidad tcp "$access_log_conns"
        log "  access log $mode: ${row[*]}"
        lines=-
        [ "$mode" = off ] || lines=$(wc -l <"$tmp/access.log" 2>/dev/null || echo 0)
        [ "$mode" = off ] && base=${row[3]}
        extra=$(awk -v a="${row[3]}" -v b="$base" \
                'BEGIN { if (a == a + 0 && b == b + 0) printf "%+.2f", a - b; else print "-" }')
        echo "| $mode | ${row[0]} | ${row[2]} | ${row[3]} | $extra | ${row[4]} | $lines |"
    done
    row_conf=()
}

# ---- main -----------------------------------------------------------------

main() {
    log "run.sh: building in $build"
    build_all
    log "run.sh: $seconds s per run, raidad worker_processes = $worker_sets"
    echo "## raidad / ceiling: $seconds s per run, median of $repeat," \
         "raidad worker_processes = ${worker_sets// / and }${worker_threads:+, worker_threads = $worker_threads}${commit_threads:+, commit_threads = $commit_threads}${cpu_affinity:+, worker_cpu_affinity = $cpu_affinity}${sched_batch:+, worker_sched_batch = $sched_batch}," \
         "raida-bench -t $tcp_threads (TCP), -t $udp_threads (UDP)"
    echo
    echo "$(nproc) CPUs ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r)"
    echo
    echo "Load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shares its CPUs)"
    echo
    if [ "$table" = 1 ]; then
        bench_table
        echo
        echo "Load average after the table: $(cut -d' ' -f1-3 /proc/loadavg)"
    fi
    if [ "$coin_count" -gt 0 ]; then
        echo
        echo "### Coins: detect and pown against echo"
        echo
        coin_table
    fi
    if [ "$idle_conns" -gt 0 ]; then
        echo
        echo "### Memory per idle connection"
        echo
        echo "| | |"
        echo "|---|---|"
        memory_per_connection
    fi
    if [ "$access_log" = 1 ]; then
        echo
        echo "### Access log: TCP echo, $access_log_conns connections, CPU per request"
        echo
        access_log_cost
    fi
    if [ "$max_idle" = 1 ]; then
        echo
        echo "### Most idle connections"
        echo
        echo "| | |"
        echo "|---|---|"
        max_idle_connections
    fi
}

main "$@"
