#!/usr/bin/env bash
# Scrape cost of the fleet view (BENCHMARKS.md, "Fleet view: scrape cost"): arranges 120
# processes sharing 12 shared-memory objects (4 memfds, 4 shared anonymous mappings, 4 /dev/shm
# files, each 16 MiB, half written, a quarter of that paged out), then times, RUNS times each:
#   - a scrape of pagestat-exporter with --min-interval 0 (every scrape a full scan), over HTTP,
#     as it runs by default (no PSS) and with --pss;
#   - the whole `pagestat top --by cgroup --format prometheus` process;
#   - `smem` (when installed) over the same machine, for comparison;
# and prints the medians and what each says the arranged processes have in swap. Needs root and
# swap; removes what it made (processes, /dev/shm files) on exit.
#   bash Scripts/fleet-bench.sh            (release builds of pagestat and pagestat-exporter)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-21}
BIN=${PAGESTAT_BIN:-.build/release}
[ "$(id -u)" = 0 ] || { echo "fleet-bench.sh: needs root" >&2; exit 1; }
[ "$(wc -l < /proc/swaps)" -gt 1 ] || { echo "fleet-bench.sh: needs swap on" >&2; exit 1; }
[ -x "$BIN/pagestat" ] && [ -x "$BIN/pagestat-exporter" ] || {
    echo "fleet-bench.sh: build first: swift build -c release --product pagestat && swift build -c release --product pagestat-exporter" >&2; exit 1; }

work=$(mktemp -d /tmp/pagestat-fleet-bench.XXXXXX)
arranger=""; exporter=""
cleanup() {
    [ -n "$exporter" ] && kill "$exporter" 2>/dev/null && wait "$exporter" 2>/dev/null || true
    [ -n "$arranger" ] && kill "$arranger" 2>/dev/null && wait "$arranger" 2>/dev/null || true
    rm -f /dev/shm/pagestat-fleet-bench-$$-*
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The arranger maps 12 objects, pages a quarter of each out, then forks 119 children that inherit
# the mappings and wait: 120 processes mapping every object.
python3 - "$$" > "$work/arranged" <<'PY' &
import mmap, os, signal, sys, time
tag = sys.argv[1]
size = 16 << 20
page = mmap.PAGESIZE
maps = []
for i in range(4):
    fd = os.memfd_create(f"pagestat-fleet-bench-{i}")
    os.ftruncate(fd, size)
    maps.append(mmap.mmap(fd, size, flags=mmap.MAP_SHARED))
    maps.append(mmap.mmap(-1, size, flags=mmap.MAP_SHARED))
    path = f"/dev/shm/pagestat-fleet-bench-{tag}-{i}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, size)
    maps.append(mmap.mmap(fd, size, flags=mmap.MAP_SHARED))
for m in maps:
    for offset in range(0, size // 2, page):
        m[offset] = 1 + (offset // page) % 255
    m.madvise(21, 0, size // 4)  # MADV_PAGEOUT
children = []
for _ in range(119):
    pid = os.fork()
    if pid == 0:
        signal.pause()
        os._exit(0)
    children.append(pid)
print(os.getpid(), flush=True)
def stop(*_):
    for pid in children:
        os.kill(pid, signal.SIGTERM)
    for pid in children:
        os.waitpid(pid, 0)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    signal.pause()
PY
arranger=$!
for _ in $(seq 100); do [ -s "$work/arranged" ] && break; sleep 0.2; done
echo "arranged: 120 processes (python3 $arranger and 119 children) sharing 12 objects of 16 MiB, a quarter of each paged out"
echo "processes on the machine: $(ls -d /proc/[0-9]* | wc -l); load: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# The exporter, every scrape a scan waited for (--scan-deadline 300): as it runs by default (no PSS), then with --pss.
for flags in "" "--pss"; do
    "$BIN/pagestat-exporter" --listen 127.0.0.1:0 --min-interval 0 --scan-deadline 300 --objects 20 $flags 2> "$work/exporter.err" &
    exporter=$!
    for _ in $(seq 50); do grep -q serving "$work/exporter.err" && break; sleep 0.1; done
    port=$(grep -o '127.0.0.1:[0-9]*' "$work/exporter.err" | head -1 | cut -d: -f2)
    curl -s "http://127.0.0.1:$port/metrics" > /dev/null   # warm-up
    : > "$work/scans"
    for _ in $(seq "$RUNS"); do
        curl -s -o "$work/metrics" -w '%{time_total}\n' "http://127.0.0.1:$port/metrics"
        grep '^pagestat_exporter_scan_duration_seconds' "$work/metrics" | awk '{print $2 * 1000}' >> "$work/scans"
    done | awk '{print $1 * 1000}' | median > "$work/scrape"
    echo "exporter ${flags:-(default, no PSS)} scrape (full scan, HTTP included), median of $RUNS: $(cat "$work/scrape") ms"
    echo "  its own scans (pagestat_exporter_scan_duration_seconds), median: $(median < "$work/scans") ms;" \
         "series: $(grep -vc '^#' "$work/metrics")"
    echo "  swapped shared memory, every cgroup: $(awk '/^pagestat_shared_swapped_bytes/ {s += $2} END {printf "%.1f MiB", s / 1048576}' "$work/metrics")"
    kill "$exporter"; wait "$exporter" 2>/dev/null || true; exporter=""
done

for _ in $(seq "$RUNS"); do
    start=$(date +%s%N); "$BIN/pagestat" top --by cgroup --format prometheus > /dev/null; end=$(date +%s%N)
    echo $(( (end - start) / 1000 ))
done | awk '{print $1 / 1000}' | median > "$work/top"
echo "pagestat top --by cgroup --format prometheus (whole process), median of $RUNS: $(cat "$work/top") ms"
echo "  swapped shared memory, every cgroup (other users' objects included: they move the figures): $("$BIN/pagestat" top --by cgroup --format prometheus | awk '/^pagestat_shared_swapped_bytes/ {s += $2} END {printf "%.1f MiB", s / 1048576}')"

if command -v smem > /dev/null; then
    for _ in $(seq "$RUNS"); do
        start=$(date +%s%N); smem -c "pid swap pss" > /dev/null; end=$(date +%s%N)
        echo $(( (end - start) / 1000 ))
    done | awk '{print $1 / 1000}' | median > "$work/smem"
    echo "smem -c 'pid swap pss' (whole process), median of $RUNS: $(cat "$work/smem") ms"
    pids=$(echo "$arranger"; cat /proc/"$arranger"/task/*/children | tr ' ' '\n' | grep .)
    smem_swap=$(smem -c "pid swap" -H | awk -v list="$(echo $pids)" 'BEGIN {n = split(list, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1} ($1 in want) {s += $2} END {printf "%.1f MiB", s / 1024}')
    echo "  smem's swap of the 120 arranged processes, added up: $smem_swap"
else
    echo "smem: not installed (apt-get install smem), no comparison"
fi
pidargs=$({ echo "$arranger"; cat /proc/"$arranger"/task/*/children | tr ' ' '\n' | grep .; } | sed 's/^/--pid /')
echo "pagestat's swap of the same 120 processes, added up: $("$BIN/pagestat" top --format csv $pidargs | awk -F, '$2 == "TOTAL" {printf "%.1f MiB", $6 / 1048576}')"
echo "what was paged out: 12 objects x 4 MiB = 48.0 MiB (less whatever the kernel had not written to swap yet);" \
     "swapped shared memory beyond it (other users' objects, which cachestat has to walk too) is in the totals above"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
