#!/usr/bin/env bash
# Output identity: the current build's `pagestat` against a base commit's, byte for byte.
#
#   Scripts/output-identity.sh [BASE_REF]
#
# BASE_REF defaults to the commit named in Scripts/output-baseline (one full hash a line); that
# file moves forward when a change means to change pagestat's output. The base's `pagestat` is
# built once per commit in a git worktree under $PAGESTAT_BASELINE_CACHE (default
# /var/cache/pagestat-baseline/HASH; the worktree is removed after the build, the build directory
# and the binary stay and are reused; rm -rf the directory to take them away). The current build
# is `swift build --product pagestat` of this checkout.
#
# As root, in new PID, IPC and mount namespaces (so that `top` and `objects` see only the
# processes arranged here, SysV segments only those made here, and /dev/shm is a tmpfs of its
# own), it arranges layouts for real with the CURRENT build's `pagestat lab hold`:
#   - the default lab layout (shared anonymous, memfd, /dev/shm, SysV, private, file; parts
#     written, paged out and guarded);
#   - shared anonymous memory, every other page written and half of them paged out (needs swap);
#   - a hugetlbfs file mapped by the holder (the huge page pool is given one page for the run where
#     it has none, and put back; where it cannot grow, the script says so and leaves it out);
#   - hostile names (a newline, an escape sequence, a byte that is not UTF-8, a tab, a
#     right-to-left mark) in the holder's comm, a memfd and two files;
# (held by a copy of the current build), and runs both binaries on the same processes for show, summary, raw, map, file, objects and
# top, in every format each offers (text, json, csv, prometheus, svg), with both engines,
# --range, -o/--columns and the layout options, comparing stdout, stderr and the exit code.
#
# Exclusions, each because a fact is not the renderer's to keep still:
#   - Nothing is edited out of the output (no sed) but the one note below (auto in a PID namespace). None of the commands compared prints a time
#     or a duration; `summary --interval`, `doctor` and `bench` (which do) are not compared.
#   - The pages of shared libraries are also mapped by processes outside these namespaces (the
#     machine's builds), so their PSS and USS, their page-cache state, their PFNs (compaction)
#     and their kernel page flags (referenced, idle) may move between two runs. Most
#     comparisons therefore keep to the arranged memory (--kind shared-anon,shmem,private-anon,
#     --range) or choose columns without PSS and USS (-o). The whole-process ones that remain
#     (show; summary, whose warnings compare each mapping's PSS with smaps'; top's JSON and
#     Prometheus, which also carry the machine's swap areas' use) are run base, current, base:
#     they pass when the current build equals either base run, and fail only when the base gave
#     the same bytes twice and the current build others. When the base itself moves on five
#     tries, the comparison is reported UNSETTLED with its diff and not counted as a failure.
#     summary and top are never counted as failures, only as UNSETTLED with their diff: summary's
#     warnings compare PSS with smaps read a moment later, and on a busy machine the base's own
#     runs disagree on them even when two in a row agree (on a quiet machine they settle).
#     The whole-process `show` is unsettled-only too: the holder's shared-library pages are
#     `exclusive` or not depending on which pages of the same libraries the scanning binary
#     itself has touched, and two builds touch different ones (its arranged memory is compared
#     strictly, with --kind). show, raw, map, file and objects, which otherwise carry no such
#     fact, do fail on a difference.
#   - `objects --engine bpf` is left out: in the base its notes come in an order that changes
#     from run to run (objects whose walk failed, "descriptor N not found in this process").
#   - `auto` is the BPF engine for shared memory wherever it loads, and the base's was not. In
#     these PID namespaces, though, the BPF walker finds none of pagestat's descriptors (its
#     program matches the kernel's tgid, not the namespace's pid), in both builds: `--engine bpf`
#     leaves such pages unknown with a note, as the base did, and `auto` now sees that before
#     it walks and answers with the syscalls engine, as the base's auto did, with one note more
#     ("file side: the syscalls engine (the BPF engine could not load: ...)"). Every comparison
#     takes that one note out of the current build's output (text: its line; JSON: its array
#     element; the base never writes it here), the only edit any comparison makes. auto's swap
#     locations themselves are checked outside namespaces, against the slots' content, by
#     AutoEngineTests and XArrayWalkerTests.
# Prints one line per comparison that differs, with its diff, and exits 1 when any differs;
# exit 0 with a count otherwise; 2 when it cannot run (not root, no base build).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [ "${1:-}" = --inside ]; then
    inside=yes
    shift
else
    inside=""
fi

if [ -z "$inside" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "output-identity: needs root (namespaces, the lab's paged-out memory, PFNs)" >&2
        exit 2
    fi
    ref=${1:-$(head -1 Scripts/output-baseline)}
    hash=$(git rev-parse --verify --quiet "$ref^{commit}") || { echo "output-identity: no such commit: $ref" >&2; exit 2; }
    cache=${PAGESTAT_BASELINE_CACHE:-/var/cache/pagestat-baseline}/$hash
    if [ ! -x "$cache/pagestat" ]; then
        echo "output-identity: building pagestat at ${hash:0:12} in $cache (once per commit)"
        mkdir -p "$cache"
        rm -rf "$cache/src"
        git worktree prune
        git worktree add --quiet --detach "$cache/src" "$hash"
        status=0
        swift build --package-path "$cache/src" --scratch-path "$cache/build" --product pagestat || status=$?
        if [ "$status" = 0 ]; then
            cp "$cache/build/debug/pagestat" "$cache/pagestat.new"
            mv "$cache/pagestat.new" "$cache/pagestat"
        fi
        git worktree remove --force "$cache/src"
        [ "$status" = 0 ] || { echo "output-identity: the base ${hash:0:12} did not build" >&2; exit 2; }
    fi
    buildlog=$(mktemp)
    if ! swift build --product pagestat > "$buildlog" 2>&1; then
        cat "$buildlog" >&2
        rm -f "$buildlog"
        echo "output-identity: the current checkout did not build" >&2
        exit 2
    fi
    rm -f "$buildlog"
    current=$(swift build --show-bin-path)/pagestat
    echo "output-identity: $current against ${hash:0:12} ($cache/pagestat)"
    exec unshare --pid --fork --mount-proc --ipc --mount --propagation private \
        bash "$0" --inside "$cache/pagestat" "$current"
fi

# Inside the namespaces.
base=$1
current=$2
# No BPF pins: where bpffs is mounted at /sys/fs/bpf (systemd mounts it), the first run of each
# binary would load with libbpf and pin, the later ones load from the pin, and the two ways hold
# different descriptors, whose numbers some messages name. Both binaries load with libbpf.
export PAGESTAT_BPF_PIN_ROOT=off
work=$(mktemp -d /var/tmp/pagestat-identity.XXXXXX)
holders=()
hugetlb_mount=""
pool_before=""
cleanup() {
    for pid in "${holders[@]}"; do kill "$pid" 2> /dev/null || true; done
    wait 2> /dev/null || true
    if [ -n "$hugetlb_mount" ]; then umount "$hugetlb_mount" 2> /dev/null || true; fi
    # The pool as it was (after the umount, which gave its page back).
    if [ -n "$pool_before" ]; then echo "$pool_before" > /proc/sys/vm/nr_hugepages 2> /dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mount -t tmpfs -o size=64m,mode=1777 pagestat-identity /dev/shm
# The layouts are held by a copy of the current build: the binary's own pages are then mapped by
# the holder alone, not also by each run of the current build that reads them (their
# exclusive flag and PSS would change with every run).
mkdir -p "$work/holder"
cp "$current" "$work/holder/pagestat"

compared=0
differ=0
unsettled=0
notes=()

# The current build's note that the BPF engine could not load is taken out of its output (see
# the header).
unavailable_note='file side: the syscalls engine (the BPF engine could not load: '
# run WHICH BINARY ARGS...: stdout, stderr and exit code of one run in $work/WHICH.*
run() {
    local which=$1 binary=$2
    shift 2
    set +e
    "$binary" "$@" > "$work/$which.out" 2> "$work/$which.err" < /dev/null
    echo "exit $?" > "$work/$which.exit"
    set -e
    if [ "$which" = current ]; then
        local part
        for part in out err; do
            NOTE="$unavailable_note" python3 -c '
import os, re, sys
path, note = sys.argv[1], os.environ["NOTE"]
data = open(path, "rb").read().decode("utf-8", "surrogateescape")
# JSON: the array element (a string with no unescaped quote), with its comma.
element = "\"" + re.escape(note) + r"(?:[^\"\\]|\\.)*\""
data, count = re.subn(element + r",\s*|,\s*" + element + "|" + element, "", data, count=1)
if count == 0:
    data = "".join(line for line in data.splitlines(True) if note not in line)
open(path, "wb").write(data.encode("utf-8", "surrogateescape"))
' "$work/$which.$part"
        done
    fi
}
same() { cmp -s "$work/$1.out" "$work/$2.out" && cmp -s "$work/$1.err" "$work/$2.err" && cmp -s "$work/$1.exit" "$work/$2.exit"; }

# compare NAME ARGS...: runs base, current and base again with ARGS. It passes when the current
# build's stdout, stderr and exit code equal one of the base's runs. It differs when the base
# gave the same bytes twice and the current build others; when the base itself moved (a fact
# that changed between runs), it tries again, up to five times, and then reports the comparison
# as unsettled, with its diff, without failing.
compare() {
    local name=$1
    shift
    compared=$((compared + 1))
    local attempt steady=""
    for attempt in 1 2 3 4 5; do
        run base "$base" "$@"
        run current "$current" "$@"
        same base current && return 0
        run again "$base" "$@"
        same again current && return 0
        if same base again; then
            steady=yes
            break
        fi
    done
    # summary's warnings cross-check each mapping's PSS against smaps, read a moment apart, and
    # top carries PSS and the swap areas' use: on a busy machine the base's own runs disagree
    # on them even when two in a row agree, so these never count as failures, only as unsettled.
    if [ -n "$steady" ] && [ "$1" != summary ] && [ "$1" != top ] && [[ "$name" != "show whole process"* ]]; then
        differ=$((differ + 1))
        echo "output-identity: DIFFERS: $name: pagestat $*"
    else
        unsettled=$((unsettled + 1))
        echo "output-identity: UNSETTLED (no pair of runs agreed and the output carries facts that move between runs; not counted as a failure): $name: pagestat $*"
    fi
    local part
    for part in exit err out; do
        if ! cmp -s "$work/base.$part" "$work/current.$part"; then
            echo "--- $part (base, then current):"
            if grep -qI . "$work/base.$part" "$work/current.$part" 2> /dev/null || [ ! -s "$work/base.$part" ]; then
                diff -a "$work/base.$part" "$work/current.$part" | head -40 || true
            else
                cmp -l "$work/base.$part" "$work/current.$part" | head -10 || true
            fi
        fi
    done
}

# hold NAME ARGS...: starts `current lab ARGS` with stdin open, waits for its JSON line in
# $work/NAME.json.
hold() {
    local name=$1
    shift
    mkfifo "$work/$name.in"
    "$work/holder/pagestat" lab "$@" < "$work/$name.in" > "$work/$name.json" 2> "$work/$name.err" &
    holders+=($!)
    exec {fd}> "$work/$name.in"
    local i
    for i in $(seq 100); do
        [ -s "$work/$name.json" ] && return 0
        if ! kill -0 "${holders[-1]}" 2> /dev/null; then break; fi
        sleep 0.1
    done
    echo "output-identity: the layout $name did not come up: $(cat "$work/$name.err")" >&2
    return 1
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d"+sys.argv[2]))' "$@"; }

swap_on=""
[ "$(wc -l < /proc/swaps)" -gt 1 ] && swap_on=yes

# The default layout.
pages=64
hold default hold --pages $pages --file-directory "$work"
pid=$(field "$work/default.json" '["pid"]')
len=$((pages * 4096))
lab_kinds=shared-anon,shmem,private-anon
for format in text json csv; do
    for engine in auto syscalls bpf; do
        compare "show $format $engine" show "$pid" --format "$format" --engine "$engine" --kind "$lab_kinds"
        compare "show whole process $format $engine" show "$pid" --format "$format" --engine "$engine"
        compare "summary $format $engine" summary "$pid" --format "$format" --engine "$engine" --kind "$lab_kinds"
    done
    for engine in auto syscalls; do
        compare "objects $format $engine" objects --format "$format" --engine "$engine"
    done
    compare "summary whole process $format" summary "$pid" --format "$format"
    compare "show kernel view $format" show "$pid" --format "$format" --kernel-view --kind "$lab_kinds"
    compare "show flags $format" show "$pid" --format "$format" --flags --kind shared-anon,shmem
    compare "summary flags $format" summary "$pid" --format "$format" --flags --kind "$lab_kinds"
    compare "summary columns $format" summary -p "$pid" --format "$format" -o kind,size,present,swapped,cached,none,unknown,rss,swap,path
    compare "show states and kinds $format" show "$pid" --format "$format" --state swapped,none --kind shared-anon,shmem
    compare "show no headers $format" show "$pid" --format "$format" --no-headers --bytes --kind "$lab_kinds"
    compare "file $format" file --format "$format" "$work"/pagestat-fixture-*.data /dev/shm
    compare "file pages $format" file --pages -r --format "$format" /dev/shm
    compare "file pages bpf $format" file --pages --engine bpf --format "$format" "$(field "$work/default.json" '["paths"]["memfd"]')"
    compare "file syscalls $format" file --engine syscalls --format "$format" -r /dev/shm
    compare "objects verbose $format" objects --verbose --format "$format"
    compare "top -p $format" top -p "$pid" --format "$format"
    compare "top columns $format" top -p "$pid" --format "$format" -o pid,processes,rss,swap,shmem-swap,shmem,shmem-cached,name
done
for units in --human --bytes --pages; do
    compare "show $units" show "$pid" "$units" --kind "$lab_kinds"
    compare "summary percent $units" summary "$pid" "$units" --percent --kind "$lab_kinds"
done
compare "show match" show "$pid" --flags --match swapbacked --kind shared-anon,shmem
compare "top prometheus" top -p "$pid" --format prometheus --objects 3
compare "top by command" top --by command --sort swap -o processes,rss,swap,shmem-swap,shmem,shmem-cached,name
compare "top by user" top --by user --format csv -o name,processes,rss,swap,shmem-swap,shmem
compare "top by cgroup" top --by cgroup --format json
compare "top sort name reverse" top --sort name --reverse --limit 2 --verbose -o pid,rss,swap,shmem,name
for region in shared-anon memfd tmpfs sysv private-anon file; do
    start=$(field "$work/default.json" "[\"regions\"][\"$region\"]")
    range=$(printf '0x%x+%d' "$start" "$len")
    compare "show --range $region" show -p "$pid" --range "$range"
    compare "show --range csv $region" show -p "$pid" --range "$range" --format csv
    for engine in auto syscalls bpf; do
        compare "show --range json $region $engine" show -p "$pid" --range "$range" --format json --engine "$engine"
        compare "raw $region $engine" raw -p "$pid" --range "$range" --engine "$engine"
    done
    compare "raw --kernel $region" raw -p "$pid" --range "$range" --kernel
    compare "map --range $region" map -p "$pid" --range "$range" --width 80 --color always
done
compare "map text" map "$pid" --width 100 --color never
compare "map svg" map "$pid" --format svg --kind "$lab_kinds"
compare "map kind" map "$pid" --kind shared-anon,shmem --width 64 --color always
compare "map file" map --file "$(field "$work/default.json" '["paths"]["tmpfs"]')" --width 64 --color never
compare "map file svg" map --file "$(field "$work/default.json" '["paths"]["memfd"]')" --format svg

# Bad input: one line on stderr, the same exit code.
compare "range not mapped" show "$pid" --range 0x1000+4K
compare "no such process" summary 999999
compare "bad column" summary "$pid" -o nonsense
compare "bad range" raw "$pid" --range nonsense
compare "missing file" file /nonexistent-pagestat-identity

# Shared memory, every other page written, half of those paged out.
if [ -n "$swap_on" ]; then
    hold alternate anon --pages 4096 --shared --dirty 50 --pattern alternate --pageout 50
    apid=$(field "$work/alternate.json" '["pid"]')
    start=$(field "$work/alternate.json" '["start"]')
    range=$(printf '0x%x+16M' "$start")
    for format in text json csv; do
        for engine in auto syscalls bpf; do
            compare "alternate show $format $engine" show "$apid" --format "$format" --engine "$engine" --range "$range"
        done
        compare "alternate summary $format" summary "$apid" --format "$format" --kind shared-anon
    done
    compare "alternate raw" raw "$apid" --range "$range"
    compare "alternate map" map "$apid" --range "$range" --width 120 --color always
    compare "alternate top" top -p "$apid" --format prometheus
else
    notes+=("the alternate shared layout: NOT RUN (no swap on)")
fi

# A hugetlbfs file, mapped. Where the pool has no free huge page, it gets one for the run (and
# is put back as it was on exit).
free_huge=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
if [ "${free_huge:-0}" -lt 1 ]; then
    pool_before=$(cat /proc/sys/vm/nr_hugepages)
    echo $((pool_before + 1)) > /proc/sys/vm/nr_hugepages 2> /dev/null || true
    free_huge=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
fi
if [ "${free_huge:-0}" -ge 1 ]; then
    hugetlb_mount="$work/hugetlbfs"
    mkdir -p "$hugetlb_mount"
    mount -t hugetlbfs -o size=$(( $(awk '/^Hugepagesize:/ { print $2 }' /proc/meminfo) * 1024 )) pagestat-identity "$hugetlb_mount"
    fallocate -l "$(awk '/^Hugepagesize:/ { print $2 * 1024 }' /proc/meminfo)" "$hugetlb_mount/huge"
    hold hugetlb hold --map "$hugetlb_mount/huge"
    hpid=$(field "$work/hugetlb.json" '["pid"]')
    for format in text json csv; do
        compare "hugetlb show $format" show "$hpid" --kind hugetlb --format "$format"
        compare "hugetlb summary $format" summary "$hpid" --kind hugetlb --format "$format"
    done
    compare "hugetlb file" file --pages "$hugetlb_mount/huge"
else
    notes+=("the hugetlbfs layout: NOT RUN (the huge page pool has no free page: HugePages_Free ${free_huge:-0})")
fi

# Hostile names.
mkdir -p "$work/hostile"
hold hostile hold --hostile-name 0a1b5b33316dff2e2e09e280ae --file-directory "$work/hostile"
hpid=$(field "$work/hostile.json" '["pid"]')
for format in text json csv; do
    # The holder's own file mappings (its binary, shared libraries) are left out: their pages'
    # exclusive flag moves with which pages the scanning build itself touched.
    compare "hostile show shmem $format" show "$hpid" --format "$format" --kind shmem
    compare "hostile show files $format" show "$hpid" --format "$format" --kind file --path "$work/hostile/*"
    compare "hostile summary $format" summary "$hpid" --format "$format" --kind shmem,file -o kind,size,present,swapped,cached,none,rss,swap,path
    compare "hostile file $format" file --pages --format "$format" -r "$work/hostile"
    compare "hostile objects $format" objects --format "$format"
done
compare "hostile top" top --by command -o processes,rss,swap,shmem-swap,shmem,name
compare "hostile top csv" top --format csv -o pid,name,rss,swap,shmem
compare "hostile top prometheus" top -p "$hpid" --format prometheus
compare "hostile map" map "$hpid" --kind shmem --width 64 --color never

for note in "${notes[@]}"; do echo "output-identity: $note"; done
if [ "$differ" -gt 0 ]; then
    echo "output-identity: $differ of $compared comparisons differ ($unsettled unsettled)"
    exit 1
fi
if [ "$unsettled" -gt 0 ]; then
    echo "output-identity: all $compared comparisons byte-identical (stdout, stderr, exit code), $unsettled of them unsettled (the base moved between its own runs)"
else
    echo "output-identity: all $compared comparisons byte-identical (stdout, stderr, exit code)"
fi
