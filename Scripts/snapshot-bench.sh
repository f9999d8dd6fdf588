#!/bin/bash
# Copies a partly swapped /dev/shm object three ways and says what each cost: `pagestat snapshot`
# (swapped pages read from their slots), `dd` of the holder's /proc/PID/map_files/... link and
# `cp --sparse=always` of the file (both swap every page in). Each way's image is on disk when its
# time is taken (pagestat fsyncs its image before renaming it into place; dd conv=fsync; cp, sync).
# IMAGE_DIR puts the images elsewhere (/dev/shm: the copies without the disk's write). Also reads
# the swap area with
# `dd iflag=direct bs=1M`: the rate a slot reader can hope for, next to the rate snapshot read its
# swapped pages at (its brief's swap_read_microseconds: slot states, reads and checks).
#
# Usage (root, swap on, a memory cgroup: v2 at /sys/fs/cgroup, or v1's memory hierarchy at
# /sys/fs/cgroup/memory): Scripts/snapshot-bench.sh [SIZE_MIB [RUNS]]
# Default: a 4096 MiB object in a memory cgroup limited to 3/8 of it, 3/4 of it paged out
# before each copy, 3 runs per way (medians). PAGESTAT names the binary (release build by default).
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "snapshot-bench: run as root" >&2; exit 1; }
# The memory cgroup: v2 (memory.max, memory.peak) or v1 (memory.limit_in_bytes, memory.max_usage_in_bytes).
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
    cgroup_root=/sys/fs/cgroup limit_file=memory.max peak_file=memory.peak
elif [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
    cgroup_root=/sys/fs/cgroup/memory limit_file=memory.limit_in_bytes peak_file=memory.max_usage_in_bytes
else
    echo "snapshot-bench: needs a memory cgroup (v2 at /sys/fs/cgroup, or v1 at /sys/fs/cgroup/memory)" >&2; exit 1
fi

size_mib=${1:-4096}
runs=${2:-3}
pagestat=${PAGESTAT:-.build/release/pagestat}
[ -x "$pagestat" ] || { echo "snapshot-bench: $pagestat not built (swift build -c release)" >&2; exit 1; }
limit_mib=$((size_mib * 3 / 8))
out_mib=$((size_mib * 3 / 4))
cgroup=$cgroup_root/pagestat-snapshot-bench-$$
object=/dev/shm/pagestat-snapshot-bench-$$
work=$(mktemp -d /var/tmp/pagestat-snapshot-bench-XXXXXX)
images=$(mktemp -d "${IMAGE_DIR:-/var/tmp}/pagestat-snapshot-bench-images-XXXXXX")
holder=

cleanup() {
    [ -n "$holder" ] && kill "$holder" 2>/dev/null && wait "$holder" 2>/dev/null || true
    rm -f "$object"
    rm -rf "$work" "$images"
    [ -d "$cgroup" ] && rmdir "$cgroup" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

mkdir "$cgroup"
echo "${limit_mib}M" > "$cgroup/$limit_file"
mkfifo "$work/commands" "$work/replies"

# The holder: joins the cgroup, fills the object page by page with its own pattern (the cgroup's
# limit pushes most of it to swap), then pages out the first 3/4 again whenever asked.
python3 - "$cgroup" "$object" "$size_mib" "$out_mib" "$work/commands" "$work/replies" <<'EOF' &
import mmap, os, sys
cgroup, path, size_mib, out_mib, commands, replies = sys.argv[1:]
open(cgroup + "/cgroup.procs", "w").write(str(os.getpid()))
size, out = int(size_mib) << 20, int(out_mib) << 20
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
os.ftruncate(fd, size)
m = mmap.mmap(fd, size, mmap.MAP_SHARED)
page = bytearray(os.urandom(4096))
for offset in range(0, size, 4096):
    page[0:8] = offset.to_bytes(8, "little")
    m[offset:offset + 4096] = page
with open(replies, "w") as reply, open(commands) as command:
    for line in command:
        m.madvise(21, 0, out)
        reply.write(f"{os.getpid()} {fd}\n"); reply.flush()
EOF
holder=$!
# In the holder's order (replies, then commands): opening a FIFO blocks until its other end opens.
exec 4<"$work/replies" 3>"$work/commands"

pageout() { echo go >&3; read -r pid fd <&4; echo "$pid $fd"; }
pswpin() { awk '$1 == "pswpin" { print $2 }' /proc/vmstat; }
swapped_mib() { awk '/^Swap:/ { s += $2 } END { print int(s / 1024) }' "/proc/$1/smaps"; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# One copy: seconds, swap-ins (pswpin pages), peak cgroup memory (MiB; memory.peak reset first).
measure() {
    local name=$1; shift
    read -r pid fd < <(pageout)
    local swapped; swapped=$(swapped_mib "$pid")
    echo 0 > "$cgroup/$peak_file" 2>/dev/null || true
    local before; before=$(pswpin)
    local start; start=$(date +%s.%N)
    PID=$pid FD=$fd "$@" >/dev/null
    local end; end=$(date +%s.%N)
    local after; after=$(pswpin)
    local peak; peak=$(( $(cat "$cgroup/$peak_file") >> 20 ))
    echo "$name $(echo "$end - $start" | bc) $((after - before)) $peak $swapped" >> "$work/results"
    if [ "$name" = pagestat-snapshot ]; then
        python3 -c 'import json, sys; b = json.load(open(sys.argv[1])); print("slot-rate", b["pages"]["swap"], max(b["swap_read_microseconds"], 1), max(b["slot_io_microseconds"], 1))' \
            "$work/brief.json" >> "$work/results"
    fi
    [ "$name" = pagestat-snapshot ] && cp "$images/image.json" "$work/manifest.json"
    rm -f "$images/image" "$images/image.json"
}

snapshot() { "$pagestat" snapshot --file "/proc/$PID/fd/$FD" -o "$images/image" --format json > "$work/brief.json"; }
map_files() {
    local range link=
    for range in $(ls "/proc/$PID/map_files"); do
        if [ "$(readlink "/proc/$PID/map_files/$range")" = "$object" ]; then link=$range; break; fi
    done
    dd if="/proc/$PID/map_files/$link" of="$images/image" bs=1M conv=fsync status=none
}
copy() { cp --sparse=always "$object" "$images/image" && sync "$images/image"; }

: > "$work/results"
for _ in $(seq "$runs"); do
    measure "pagestat-snapshot" snapshot
    measure "dd-map_files" map_files
    measure "cp-sparse" copy
done

# The area holding most of the object: the one with the most slots in use.
swap=$(awk 'NR > 1 { print $4, $1 }' /proc/swaps | sort -rn | awk 'NR == 1 { print $2 }')
bound=$(dd if="$swap" of=/dev/null iflag=direct bs=1M count="$out_mib" 2>&1 | awk '/copied/ { print $(NF-1), $NF }')
# The same device over just the stretch of slots the last snapshot read (a free slot of zram reads
# faster than a written one, so the area's first MiBs flatter dd when part of them is free).
read -r first_mib span_mib used_share < <(python3 -c '
import json, sys
runs = [r for i in json.load(open(sys.argv[1]))["images"] for r in i["runs"] if r["source"] == "swap"]
first = min(r["swap_offset"] for r in runs); end = max(r["swap_offset"] + r["pages"] for r in runs)
pages = sum(r["pages"] for r in runs); per_mib = (1 << 20) // 4096
print(first // per_mib, (end + per_mib - 1) // per_mib - first // per_mib, round(pages / (end - first), 3))' "$work/manifest.json")
slots_bound=$(dd if="$swap" of=/dev/null iflag=direct bs=1M skip="$first_mib" count="$span_mib" 2>&1 | awk '/copied/ { print $(NF-1), $NF }')

echo "object ${size_mib} MiB, cgroup $limit_file ${limit_mib} MiB, ${out_mib} MiB paged out before each copy; $runs runs, medians"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-18s %10s %12s %14s %12s\n' way seconds swap-ins "peak cgroup MiB" "swapped MiB"
for way in pagestat-snapshot dd-map_files cp-sparse; do
    printf '%-18s %10s %12s %14s %12s\n' "$way" \
        "$(awk -v w="$way" '$1 == w { print $2 }' "$work/results" | median)" \
        "$(awk -v w="$way" '$1 == w { print $3 }' "$work/results" | median)" \
        "$(awk -v w="$way" '$1 == w { print $4 }' "$work/results" | median)" \
        "$(awk -v w="$way" '$1 == w { print $5 }' "$work/results" | median)"
done
echo "dd iflag=direct bs=1M of the swap area ($swap, ${out_mib} MiB): $bound"
echo "dd iflag=direct bs=1M of the slots the snapshot read (MiB $first_mib to $((first_mib + span_mib)), $used_share of them its pages): $slots_bound"
echo "pagestat snapshot's last brief: $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["pages"])' "$work/brief.json")"
# The rate of snapshot's swapped pages: bytes read from slots over the time their slot states,
# reads and checks took (the brief's swap_read_microseconds), each run; then the median.
rates=$(awk -v ps="$(getconf PAGESIZE)" '$1 == "slot-rate" { print $2 * ps / $3 / 1000 }' "$work/results" | median)
io_rates=$(awk -v ps="$(getconf PAGESIZE)" '$1 == "slot-rate" { print $2 * ps / $4 / 1000 }' "$work/results" | median)
echo "snapshot's swapped pages, median: $rates GB/s with their slot states and checks, $io_rates GB/s in the reads alone"
