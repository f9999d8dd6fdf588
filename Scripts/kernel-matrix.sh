#!/usr/bin/env bash
# The kernel matrix: pagestat's own checks on Debian's 6.1 and 6.12 cloud kernels, booted under
# QEMU, and on the host's kernel.
#
#   bash Scripts/kernel-matrix.sh              # as root; prints a table per kernel
#   bash Scripts/kernel-matrix.sh --markdown   # the same run, then the table in Markdown (docs/kernels.md)
#
# It builds the release binary (swift build -c release --product pagestat), packs it, the shared libraries ldd names
# (and libbpf.so.1 with its own when the host has it: the BPF engine loads it at run time),
# busybox (busybox-static) and Scripts/kernel-matrix-checks.sh into an initramfs. For each kernel
# it takes the newest linux-image-6.1.0-*-cloud-amd64 and linux-image-6.12.*-cloud-amd64 that the
# configured apt sources offer (apt-get download, once: the packages and what is extracted from
# them stay in $PAGESTAT_KERNEL_CACHE, /var/cache/pagestat-kernels by default, for later runs),
# adds the kernel's own modules for the virtio disk (insmod in /init: virtio_blk is a module
# there) and boots it under qemu-system-x86_64 (TCG, 2 GiB, -nographic -no-reboot) with two virtio
# disks: 128 MiB of swap (mkswap and swapon in the guest) and a 64 MiB ext4 disk for /var/tmp (the
# regular-file regions must not be on tmpfs). /dev/shm and /tmp are tmpfs. The guest runs the
# checks (pagestat doctor --verify --format json; pagestat lab hold, and pagestat show and raw on
# it), writes them between markers to its second serial port and powers off. The host runs the
# same checks on its own kernel.
#
# Exit 0 when every kernel booted and every page that pagestat told was right; 1 when a page was
# wrong, a check failed, or a kernel did not boot or finish within $PAGESTAT_MATRIX_TIMEOUT
# seconds (300 by default); 2 when a tool is missing (Scripts/test.sh installs them: qemu-system-x86,
# busybox-static, cpio). Everything it makes (temporary directory, QEMU processes, a temporary
# swap file) is removed at exit, also on failure or interrupt; PAGESTAT_MATRIX_KEEP=DIR keeps each
# kernel's console log and results there first, for a look at a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

markdown=0
for arg in "$@"; do
    case $arg in
        --markdown) markdown=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "kernel-matrix.sh: unknown argument $arg (try --help)" >&2; exit 64 ;;
    esac
done

say() { echo "kernel-matrix: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    say "run as root (apt-get download, and the host's pagestat doctor --verify needs root and swap)"
    exit 2
fi
for tool in qemu-system-x86_64 busybox cpio mkfs.ext4 xz python3 dpkg-deb apt-get apt-cache ldd; do
    if ! command -v "$tool" > /dev/null; then
        say "$tool is missing (apt-get install qemu-system-x86 busybox-static cpio e2fsprogs xz-utils python3)"
        exit 2
    fi
done
busybox=$(command -v busybox)
if ldd "$busybox" > /dev/null 2>&1; then
    say "$busybox is linked dynamically: install busybox-static"
    exit 2
fi

cache=${PAGESTAT_KERNEL_CACHE:-/var/cache/pagestat-kernels}
boot_timeout=${PAGESTAT_MATRIX_TIMEOUT:-300}
mkdir -p "$cache"
work=$(mktemp -d /tmp/pagestat-matrix.XXXXXX)
qemu_pids=()
swapfile=""
cleanup() {
    if [ -n "${PAGESTAT_MATRIX_KEEP:-}" ] && [ -d "$work" ]; then
        mkdir -p "$PAGESTAT_MATRIX_KEEP"
        for col in "$work"/col-*; do
            mkdir -p "$PAGESTAT_MATRIX_KEEP/$(basename "$col")"
            cp "$col"/meta "$col"/*.log "$col"/results.raw "$PAGESTAT_MATRIX_KEEP/$(basename "$col")/" 2>/dev/null || true
        done
    fi
    for pid in "${qemu_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [ -n "$swapfile" ]; then
        swapoff "$swapfile" 2>/dev/null || true
        rm -f "$swapfile"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The release binary, and what it still needs at run time.
say "building the release binary"
swift build -c release --product pagestat > "$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
pagestat="$(swift build -c release --show-bin-path)/pagestat"

root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,var/tmp,modules}
cp "$busybox" "$root/bin/busybox"
cp "$pagestat" "$root/pagestat"
cp Scripts/kernel-matrix-checks.sh "$root/checks.sh"
libraries() { ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'; }
{
    libraries "$pagestat"
    libbpf=/usr/lib/x86_64-linux-gnu/libbpf.so.1
    if [ -e "$libbpf" ]; then echo "$libbpf"; libraries "$libbpf"; fi
} | sort -u > "$work/libraries"
while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done < "$work/libraries"
say "initramfs: pagestat ($(du -h "$pagestat" | cut -f1)), busybox, $(wc -l < "$work/libraries") libraries: $(xargs -n1 basename < "$work/libraries" | tr '\n' ' ')"

cat > "$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs tmp /tmp
echo "matrix-init: $(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s"
for module in $(cat /modules/order); do
    insmod "/modules/$module" || echo "matrix-init: insmod $module failed"
done
waited=0
while [ ! -b /dev/vdb ] && [ $waited -lt 60 ]; do sleep 1; waited=$((waited + 1)); done
stty -F /dev/ttyS1 raw -echo
mkswap /dev/vda > /dev/null && swapon /dev/vda || echo "matrix-init: no swap"
mount -t ext4 /dev/vdb /var/tmp || echo "matrix-init: /var/tmp is not on the ext4 disk"
mkdir /tmp/checks
echo "matrix-init: checks start after $(cut -d' ' -f1 /proc/uptime) s"
sh /checks.sh /pagestat /tmp/checks /var/tmp > /dev/ttyS1
echo "matrix-init: checks done after $(cut -d' ' -f1 /proc/uptime) s"
sync
poweroff -f
EOF
chmod +x "$root/init" "$root/checks.sh"
(cd "$root" && find . | cpio -o -H newc --quiet) > "$work/common.cpio"

# The newest package whose name matches, among what the apt sources offer (after one apt-get
# update if they offer none); without an answer from apt, the newest one already in the cache.
apt_updated=0
newest() {
    local found
    found=$(apt-cache search --names-only "$1" 2>/dev/null | awk '{ print $1 }' | sort -V | tail -1)
    if [ -z "$found" ] && [ $apt_updated = 0 ]; then
        apt-get update -qq > /dev/null 2>&1 || true
        apt_updated=1
        found=$(apt-cache search --names-only "$1" 2>/dev/null | awk '{ print $1 }' | sort -V | tail -1)
    fi
    if [ -z "$found" ]; then
        found=$(ls "$cache" 2>/dev/null | sed -n 's/_.*\.deb$//p' | grep -E "$1" | sort -V | tail -1 || true)
    fi
    echo "$found"
}

# Downloads (once) and extracts (once) a kernel package; prints its extracted tree.
kernel_tree() {
    local package=$1 deb tree
    deb=$(ls "$cache/${package}_"*.deb 2>/dev/null | sort -V | tail -1 || true)
    if [ -z "$deb" ]; then
        say "downloading $package into $cache"
        if ! (cd "$cache" && apt-get download -q "$package" > "$work/download.log" 2>&1); then
            # The lists may name a version the mirror no longer has: update them once and retry.
            apt-get update -qq > /dev/null 2>&1 || true
            apt_updated=1
            if ! (cd "$cache" && apt-get download -q "$package" > "$work/download.log" 2>&1); then
                say "apt-get download $package failed:"
                cat "$work/download.log" >&2
                return 1
            fi
        fi
        deb=$(ls "$cache/${package}_"*.deb | sort -V | tail -1)
    fi
    tree="$cache/tree/$(basename "$deb" .deb)"
    if [ ! -d "$tree" ]; then
        rm -rf "$tree.partial"
        mkdir -p "$tree.partial"
        dpkg-deb -x "$deb" "$tree.partial"
        mv "$tree.partial" "$tree"
    fi
    echo "$tree"
}

# The kernel's own modules for virtio disks, with what they depend on, dependencies first, as a
# cpio archive of /modules (the kernel joins concatenated archives).
modules_cpio() {
    local tree=$1 out=$2 dir version
    dir=$(echo "$tree"/lib/modules/*)
    version=$(basename "$dir")
    local mods=$work/modules-$version
    rm -rf "$mods"
    mkdir -p "$mods/modules"
    : > "$mods/modules/order"
    declare -A files=() done=()
    local file name
    while read -r file; do
        name=$(basename "$file"); name=${name%.xz}; name=${name%.ko}; name=${name//-/_}
        files[$name]=$file
    done < <(find "$dir/kernel" -name '*.ko' -o -name '*.ko.xz')
    add() {
        local name=${1//-/_} dep deps
        [ -n "${done[$name]:-}" ] && return 0
        done[$name]=1
        if [ -z "${files[$name]:-}" ]; then
            grep -q "/${name}.ko\$\|/${name//_/-}.ko\$" "$dir/modules.builtin" && return 0
            say "$version: module $name is neither a file nor built in"
            return 1
        fi
        case ${files[$name]} in
            *.xz) xz -dc "${files[$name]}" > "$mods/modules/$name.ko" ;;
            *) cp "${files[$name]}" "$mods/modules/$name.ko" ;;
        esac
        deps=$(grep -a -o 'depends=[A-Za-z0-9_,-]*' "$mods/modules/$name.ko" | head -1 | cut -d= -f2)
        for dep in ${deps//,/ }; do add "$dep" || return 1; done
        echo "$name.ko" >> "$mods/modules/order"
    }
    add virtio_pci && add virtio_blk || return 1
    (cd "$mods" && find modules | cpio -o -H newc --quiet) > "$out"
    cp "$mods/modules/order" "$out.order"
}

# One column of the table: a label, and a directory with meta (key=value lines) and results.
columns=()

boot() {
    local label=$1 package=$2 tree col vmlinuz
    col=$work/col-$label
    mkdir -p "$col"
    columns+=("$col")
    {
        echo "label=$label"
        echo "package=$package"
    } > "$col/meta"
    if ! tree=$(kernel_tree "$package"); then
        echo "status=not downloaded" >> "$col/meta"
        return 0
    fi
    echo "version=$(basename "$tree" | cut -d_ -f2)" >> "$col/meta"
    vmlinuz=$(echo "$tree"/boot/vmlinuz-*)
    if ! modules_cpio "$tree" "$col/modules.cpio"; then
        echo "status=no virtio modules" >> "$col/meta"
        return 0
    fi
    cat "$work/common.cpio" "$col/modules.cpio" > "$col/initrd"
    dd if=/dev/zero of="$col/swap.img" bs=1M count=0 seek=128 status=none
    dd if=/dev/zero of="$col/var.img" bs=1M count=0 seek=64 status=none
    mkfs.ext4 -q -F "$col/var.img"
    say "booting $package ($(tr '\n' ' ' < "$col/modules.cpio.order" 2>/dev/null))"
    date +%s > "$col/started"
    qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 2G -nographic -no-reboot -monitor none -nic none \
        -kernel "$vmlinuz" -initrd "$col/initrd" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init mitigations=off" \
        -drive "file=$col/swap.img,format=raw,if=virtio" \
        -drive "file=$col/var.img,format=raw,if=virtio" \
        -serial "file:$col/console.log" -serial "file:$col/results.raw" \
        < /dev/null > "$col/qemu.log" 2>&1 &
    echo $! > "$col/qemu.pid"
    qemu_pids+=("$!")
}

label61=6.1
package61=$(newest '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$')
label612=6.12
package612=$(newest '^linux-image-6\.12\.[0-9]+\+deb[0-9]+-cloud-amd64$')
if [ -z "$package61" ]; then
    say "no linux-image-6.1.0-*-cloud-amd64 in the configured apt sources"
    mkdir -p "$work/col-6.1"; columns+=("$work/col-6.1")
    printf 'label=6.1\npackage=linux-image-6.1.0-*-cloud-amd64\nstatus=not offered by the configured apt sources\n' > "$work/col-6.1/meta"
else
    boot "$label61" "$package61"
fi
if [ -z "$package612" ]; then
    say "no linux-image-6.12 cloud kernel in the configured apt sources (bookworm-backports is not configured here): the 6.12 column is empty"
    mkdir -p "$work/col-6.12"; columns+=("$work/col-6.12")
    printf 'label=6.12\npackage=linux-image-6.12.*-cloud-amd64\nstatus=not offered by the configured apt sources\n' > "$work/col-6.12/meta"
else
    boot "$label612" "$package612"
fi

# The host's own kernel, while the guests boot: the same checks, directly.
host=$work/col-host
mkdir -p "$host/checks"
columns+=("$host")
printf 'label=host\npackage=the host'"'"'s kernel\nversion=%s\n' "$(uname -r)" > "$host/meta"
filedir=${PAGESTAT_SWAP_DIR:-/var/tmp}
if [ "$(wc -l < /proc/swaps)" -le 1 ]; then
    swapfile="$filedir/pagestat-matrix-$$.swap"
    fallocate -l 64M "$swapfile"
    chmod 600 "$swapfile"
    mkswap -q "$swapfile"
    swapon "$swapfile"
    say "no swap was on: turned on $swapfile (64 MiB) for the host's checks"
fi
say "running the checks on the host's kernel $(uname -r)"
start=$(date +%s)
sh Scripts/kernel-matrix-checks.sh "$pagestat" "$host/checks" "$filedir" > "$host/results.raw" 2> "$host/stderr" || true
printf 'status=ok\nseconds=%s\n' $(( $(date +%s) - start )) >> "$host/meta"

# Waits for the guests, each within its own deadline.
for col in "${columns[@]}"; do
    [ -f "$col/qemu.pid" ] || continue
    pid=$(cat "$col/qemu.pid")
    started=$(cat "$col/started")
    status=ok
    while kill -0 "$pid" 2>/dev/null; do
        if [ $(( $(date +%s) - started )) -ge "$boot_timeout" ]; then
            kill "$pid" 2>/dev/null || true
            status="timed out after $boot_timeout s"
            break
        fi
        sleep 1
    done
    wait "$pid" 2>/dev/null || true
    seconds=$(( $(date +%s) - started ))
    printf 'status=%s\nseconds=%s\n' "$status" "$seconds" >> "$col/meta"
    say "$(sed -n 's/^package=//p' "$col/meta"): $status, $seconds s"
    if ! grep -q '^===DONE' "$col/results.raw" 2>/dev/null; then
        say "its console, last lines:"
        tail -n 30 "$col/console.log" | tr -cd '\11\12\40-\176' >&2 || true
        tail -n 5 "$col/qemu.log" >&2 || true
    fi
done

python3 - "$markdown" "${columns[@]}" <<'PY'
import base64, json, re, struct, sys

markdown = sys.argv[1] == "1"
columns = sys.argv[2:]
PAGES, PAGE = 64, 4096
Q = PAGES // 4

def expected(region):
    r = lambda n, s: [s] * n
    if region in ("shared-anon", "sysv"):
        return r(Q, "swapped") + r(Q, "present") + r(2 * Q, "none")
    if region in ("memfd", "tmpfs"):
        return r(Q, "cached") + r(Q, "present") + r(Q, "swapped") + r(Q, "none")
    if region == "private-anon":
        return r(Q, "swapped") + r(2 * Q, "present") + r(Q, "none")
    if region == "file":
        return r(Q, "cached") + r(Q, "none") + r(Q, "present") + r(Q, "none")
    return []

def sections(text):
    out, name, lines = {}, None, []
    for line in text.replace("\r", "").split("\n"):
        m = re.match(r"^===BEGIN (\S+)$", line)
        if m:
            name, lines = m.group(1), []
            continue
        m = re.match(r"^===END (\S+) rc=(\d+)$", line)
        if m and name == m.group(1):
            out[name] = ("\n".join(lines).strip("\n"), int(m.group(2)))
            name = None
            continue
        if line == "===DONE":
            out["DONE"] = ("", 0)
        if name is not None:
            lines.append(line)
    return out

failed = False
results = []
for col in columns:
    meta = dict(l.split("=", 1) for l in open(f"{col}/meta").read().splitlines() if "=" in l)
    res = {"meta": meta, "cells": {}, "failures": [], "notes": []}
    results.append(res)
    cells = res["cells"]
    status = meta.get("status", "")
    try:
        raw = open(f"{col}/results.raw", "rb").read().decode("utf-8", "replace")
    except OSError:
        raw = ""
    sec = sections(raw)
    if status.startswith("not offered"):
        cells["runs"] = "not offered by the configured apt sources"
        continue
    if "uname" in sec:
        cells["kernel"] = sec["uname"][0].strip()
    if status != "ok" or "DONE" not in sec:
        why = status if status != "ok" else "no complete output"
        cells["runs"] = f"NO: {why}"
        res["failures"].append(f"did not boot or finish: {why}")
    else:
        cells["runs"] = f"yes, {meta.get('seconds', '?')} s"
    if "doctor" in sec:
        body, rc = sec["doctor"]
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if doc is None or rc not in (0, 10):
            res["failures"].append(f"doctor --verify exited {rc}: {sec.get('doctor-stderr', ('', 0))[0][:300]}")
        else:
            for fact in doc["facts"]:
                if fact["available"] is not None and fact["name"] not in ("swap",):
                    cells[f"fact:{fact['name']}"] = "yes" if fact["available"] else "no"
            cells["auto engine"] = doc["auto_engine"].split(" (")[0]
            firsts = {}
            if "doctor-text" in sec:
                for line in sec["doctor-text"][0].splitlines():
                    m = re.match(r"^(\S+)\s+(\S+)\s+\d+\s+\d+\s+\d+\s+\d+\s+(page .*)$", line)
                    if m:
                        firsts[(m.group(1), m.group(2))] = m.group(3)
            for v in doc.get("verification", []):
                key = f"verify:{v['region']} ({v['engine']})"
                if v["wrong"]:
                    first = firsts.get((v["region"], v["engine"]), "")
                    cells[key] = f"WRONG {v['wrong']}/{v['pages']}" + (f" ({first})" if first else "")
                    res["failures"].append(f"doctor --verify: {v['region']} with {v['engine']}: {v['wrong']} wrong pages" + (f", first {first}" if first else ""))
                elif v["unknown"]:
                    cells[key] = f"right {v['right']}, unknown {v['unknown']}"
                else:
                    cells[key] = f"right {v['right']}/{v['pages']}"
            res["notes"] += doc.get("notes", [])
    elif cells["runs"].startswith("yes"):
        res["failures"].append("no doctor output")
    # pagestat show on the fixture process, page by page against the arranged layout.
    fixture = None
    if "fixture" in sec:
        try:
            fixture = json.loads(sec["fixture"][0])
        except ValueError:
            pass
    if fixture and "show" in sec:
        body, rc = sec["show"]
        try:
            show = json.loads(body)
        except ValueError:
            show = None
        if rc != 0 or show is None:
            cells["show"] = f"FAILED: exit {rc}"
            res["failures"].append(f"show --pid (fixture) exited {rc}: {sec.get('show-stderr', ('', 0))[0][:300]}")
        else:
            state = {}
            for m in show["mappings"]:
                for run in m["runs"]:
                    for i in range(run["pages"]):
                        state[run["start"] + i * PAGE] = run["state"]
            right = wrong = unknown = 0
            first = None
            for region, start in fixture["regions"].items():
                for i, want in enumerate(expected(region)):
                    got = state.get(start + i * PAGE, "unknown")
                    if got == want:
                        right += 1
                    elif got == "unknown":
                        unknown += 1
                    else:
                        wrong += 1
                        if first is None:
                            first = f"{region} page {i}: arranged {want}, reported {got}"
            total = right + wrong + unknown
            if wrong:
                cells["show"] = f"exit 0, WRONG {wrong}/{total} ({first})"
                res["failures"].append(f"show on the fixture: {wrong} wrong pages, first {first}")
            else:
                cells["show"] = f"exit 0, right {right}/{total}" + (f", unknown {unknown}" if unknown else "")
    elif cells["runs"].startswith("yes"):
        cells["show"] = "FAILED: no fixture"
        res["failures"].append("the fixture did not start: " + sec.get("fixture-stderr", ("", 0))[0][:300])
    if "raw" in sec and "raw-kernel" in sec:
        def entries(name):
            body, rc = sec[name]
            data = base64.b64decode("".join(body.split()))
            return rc, [struct.unpack_from("<Q", data, 8 * i)[0] for i in range(len(data) // 8)]
        rc, ours = entries("raw")
        krc, kernel = entries("raw-kernel")
        want = expected("shared-anon")
        bits = lambda e: "present" if e >> 63 & 1 else "swapped" if e >> 62 & 1 else "none"
        bad = [i for i, w in enumerate(want) if i >= len(ours) or bits(ours[i]) != w]
        # The gap: where pagestat says swapped, the kernel's own entry has neither bit 63
        # (present) nor bit 62 (swapped); soft-dirty (bit 55) may be set.
        kernel_blind = sum(1 for i, w in enumerate(want) if w == "swapped" and i < len(kernel) and bits(kernel[i]) == "none")
        if rc != 0 or len(ours) != PAGES or bad:
            detail = f"exit {rc}, {len(ours)} entries" + (f", page {bad[0]}: {bits(ours[bad[0]]) if bad[0] < len(ours) else 'missing'}, arranged {want[bad[0]]}" if bad else "")
            cells["raw"] = f"WRONG ({detail})"
            res["failures"].append(f"raw on the fixture's shared anonymous memory: {detail}")
        else:
            cells["raw"] = f"exit 0, bit 62 on {Q}/{Q} swapped shared pages (kernel's own entry: bits 62-63 clear on {kernel_blind}/{Q})"
    if res["failures"]:
        failed = True

rows = [("runs", "boots and runs the checks")]
seen = set()
for res in results:
    for key in res["cells"]:
        if key.startswith("fact:") and key not in seen:
            seen.add(key)
            rows.append((key, key[5:]))
rows.append(("auto engine", "engine (--engine auto)"))
for res in results:
    for key in res["cells"]:
        if key.startswith("verify:") and key not in seen:
            seen.add(key)
            rows.append((key, "doctor --verify: " + key[7:]))
rows += [("show", "show --pid (fixture), 6 regions"), ("raw", "raw on swapped shared anon")]

def header(res):
    m = res["meta"]
    if m["label"] == "host":
        return f"host: {m.get('version', '')}"
    version = m.get("version") or ""
    return f"{m['package']}" + (f" ({version})" if version else "")

heads = [header(r) for r in results]
table = [[label] + [r["cells"].get(key, "") for r in results] for key, label in rows]
widths = [max(len(x) for x in col) for col in zip(*([["", *heads]] + table))]
print()
for line in [["", *heads]] + table:
    print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
print()
for res in results:
    for note in res["notes"]:
        print(f"note ({res['meta']['label']}): {note}")
    for failure in res["failures"]:
        print(f"FAILURE ({res['meta']['label']}): {failure}")
passed = sum(1 for r in results if r["cells"].get("runs", "").startswith("yes") and not r["failures"])
skipped = sum(1 for r in results if r["meta"].get("status", "").startswith("not offered"))
print("kernel matrix:", "FAILED" if failed else "every kernel booted; every page pagestat told was right")
print(f"kernel-matrix: {passed} passed, {len(results) - passed - skipped} failed" + (f", {skipped} skipped" if skipped else ""))
if markdown:
    print()
    print("| | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(heads))
    for line in table:
        print("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |")
sys.exit(1 if failed else 0)
PY
