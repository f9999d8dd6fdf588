#!/bin/sh
# The checks of the kernel matrix, run the same way on every kernel: inside each guest by its /init
# (busybox sh) and on the host by Scripts/kernel-matrix.sh. POSIX sh only, busybox's applets only.
#
# Usage: kernel-matrix-checks.sh PAGESTAT WORKDIR FILEDIR
#   PAGESTAT  the pagestat binary
#   WORKDIR   an empty directory for its temporary files (any filesystem)
#   FILEDIR   a directory on a disk filesystem (not tmpfs) for the regular-file regions
#
# Writes sections to standard output, each between "===BEGIN NAME" and "===END NAME rc=N" lines;
# binary output is base64. Swap must be on. Kernel-matrix.sh reads and judges the sections.
P=$1
T=$2
D=$3

# One command's standard output, then its standard error, as two sections.
section() {
    name=$1
    shift
    "$@" > "$T/out" 2> "$T/err"
    rc=$?
    echo "===BEGIN $name"
    cat "$T/out"
    echo
    echo "===END $name rc=$rc"
    echo "===BEGIN $name-stderr"
    cat "$T/err"
    echo
    echo "===END $name-stderr rc=0"
    return $rc
}

echo "===BEGIN uname"
uname -r
echo "===END uname rc=0"

# The doctor's facts and its page-by-page verification (JSON); its text, which names the first
# wrong page of each region, only when a page was wrong.
section doctor "$P" doctor --verify --format json --directory "$D"
if [ $? = 10 ]; then
    section doctor-text "$P" doctor --verify --directory "$D"
fi

# End to end on another process: pagestat lab hold arranges the same layout as doctor --verify and
# holds it until its standard input closes (a FIFO held open here).
mkfifo "$T/fixture.in"
"$P" lab hold --pages 64 --file-directory "$D" < "$T/fixture.in" > "$T/fixture.json" 2> "$T/fixture.err" &
fixture=$!
exec 3> "$T/fixture.in"
waited=0
while [ ! -s "$T/fixture.json" ] && kill -0 "$fixture" 2>/dev/null && [ $waited -lt 120 ]; do
    sleep 1
    waited=$((waited + 1))
done
echo "===BEGIN fixture"
cat "$T/fixture.json"
echo
echo "===END fixture rc=0"
pid=$(sed -n 's/^{"pid":\([0-9]*\),.*/\1/p' "$T/fixture.json")
if [ -n "$pid" ]; then
    section show "$P" show --pid "$pid" --format json
    shared=$(sed -n 's/.*"shared-anon":\([0-9]*\).*/\1/p' "$T/fixture.json")
    # 64 pages of 4 KiB (x86-64): pagestat's pagemap entries, then the kernel's own.
    "$P" raw --pid "$pid" --range "$shared+256K" > "$T/raw" 2> "$T/err"
    rc=$?
    echo "===BEGIN raw"
    base64 < "$T/raw"
    echo "===END raw rc=$rc"
    "$P" raw --kernel --pid "$pid" --range "$shared+256K" > "$T/raw" 2> "$T/err"
    rc=$?
    echo "===BEGIN raw-kernel"
    base64 < "$T/raw"
    echo "===END raw-kernel rc=$rc"
else
    echo "===BEGIN fixture-stderr"
    cat "$T/fixture.err"
    echo "===END fixture-stderr rc=1"
fi
exec 3>&-
wait "$fixture"
echo "===DONE"
