#!/usr/bin/env bash
# The whole test suite, as the README says to run it.
#
# Tests that need swap and root run on real, swapped-out memory. Run as root with no swap on, this
# script turns on a temporary swap file for the run and removes it afterwards, also when a test
# fails or the run is interrupted. Without root those tests are reported as NOT RUN, never passed.
set -euo pipefail
cd "$(dirname "$0")/.."

swapfile=""
cleanup() {
    if [ -n "$swapfile" ]; then
        swapoff "$swapfile" 2>/dev/null || true
        rm -f "$swapfile"
        echo "test.sh: removed the temporary swap file $swapfile"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(id -u)" = 0 ] && [ "$(wc -l < /proc/swaps)" -le 1 ]; then
    # A swap file must live on a disk filesystem, not tmpfs.
    swapfile="${PAGESTAT_SWAP_DIR:-/var/tmp}/pagestat-test-$$.swap"
    fallocate -l 1G "$swapfile"
    chmod 600 "$swapfile"
    mkswap -q "$swapfile"
    swapon "$swapfile"
    echo "test.sh: no swap was on; turned on the temporary swap file $swapfile (1 GiB)"
elif [ "$(id -u)" != 0 ]; then
    echo "test.sh: WARNING: not root: the tests that need root and swap will be reported as NOT RUN" >&2
fi

swift build
swift test --disable-xctest "$@"
