#!/usr/bin/env bash
# The whole test suite, as the README says to run it.
#
# Tests that need swap and root run on real, swapped-out memory. Run as root with no swap on, this
# script turns on a temporary swap file for the run and removes it afterwards, also when a test
# fails or the run is interrupted. Without root those tests are reported as NOT RUN, never passed.
set -euo pipefail
cd "$(dirname "$0")/.."

swapfile=""
external=""
cleanup() {
    if [ -n "$external" ]; then rm -rf "$external"; fi
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

# The map tests rasterize pagestat's SVG with a real renderer (rsvg-convert) and read its pixels
# with python3. As root, install them when missing; without them those tests say NOT RUN.
picture_tools=()
command -v rsvg-convert > /dev/null || picture_tools+=(librsvg2-bin)
command -v python3 > /dev/null || picture_tools+=(python3)
if [ ${#picture_tools[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "test.sh: installing ${picture_tools[*]} for the map tests"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${picture_tools[@]}" > /dev/null
    else
        echo "test.sh: WARNING: ${picture_tools[*]} missing and not root: the SVG map tests will be reported as NOT RUN" >&2
    fi
fi

# The exporter's end-to-end test scrapes it with a real Prometheus server, and its unit tests run
# promtool on the exposition: as root, install Debian's prometheus package when it is missing.
if [ "$(id -u)" = 0 ]; then
    if ! command -v prometheus > /dev/null || ! command -v promtool > /dev/null; then
        echo "test.sh: installing prometheus for the exporter's end-to-end test"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus > /dev/null
    fi
else
    echo "test.sh: WARNING: not root: prometheus is not installed if missing; the end-to-end exporter test will be reported as NOT RUN" >&2
fi

# The project's own sources build without a warning: a warning from a file under Sources/, Tests/
# or Examples/ fails the run (dependencies' warnings are theirs). Only the files a build compiles
# can warn: on a clean clone, all of them.
mkdir -p .build
swift build 2>&1 | tee .build/test-sh-build.log
own_warnings=$(grep -E "^$PWD/(Sources|Tests|Examples)/[^:]+:[0-9]+:[0-9]+: warning:" .build/test-sh-build.log | sort -u || true)
if [ -n "$own_warnings" ]; then
    echo "$own_warnings" >&2
    echo "test.sh: FAILED: the build printed $(grep -c . <<< "$own_warnings") warnings in the project's own sources" >&2
    exit 1
fi

# The README's library example, built as a user would: in a package of its own that depends on
# this one by path (named pagestat, as a clone is) and uses the PageStat product, then run on this
# script's own process. Its build directory stays in .build/external-example, so that a second run
# builds only what changed; the package itself is made afresh in a temporary directory each time.
external=$(mktemp -d "${TMPDIR:-/tmp}/pagestat-external.XXXXXX")
mkdir -p "$external/Sources/MyTool"
ln -s "$PWD" "$external/pagestat"
cat > "$external/Package.swift" <<'MANIFEST'
// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "MyTool",
    dependencies: [
        .package(path: "pagestat"),
    ],
    targets: [
        .executableTarget(name: "MyTool", dependencies: [.product(name: "PageStat", package: "pagestat")]),
    ],
    swiftLanguageModes: [.v6]
)
MANIFEST
cp Examples/LibraryExample/main.swift "$external/Sources/MyTool/main.swift"
swift build --package-path "$external" --scratch-path "$PWD/.build/external-example"
for mode in "" --stream; do
    output=$("$PWD/.build/external-example/debug/MyTool" $$ $mode)
    if ! grep -q "pages swapped" <<< "$output"; then
        echo "test.sh: the README's library example, built in a package of its own, printed no count: $output" >&2
        exit 1
    fi
done
echo "test.sh: the README's library example builds and runs in a package of its own"
rm -rf "$external"
external=""

# The DocC catalogs build, without a warning (a broken symbol link is one).
for target in PageStat PageStatCore; do
    docs=$(swift package generate-documentation --target "$target" 2>&1) || { echo "$docs" >&2; exit 1; }
    if grep -q "warning:" <<< "$docs"; then
        echo "test.sh: generate-documentation --target $target warns:" >&2
        grep -A3 "warning:" <<< "$docs" >&2
        exit 1
    fi
done
echo "test.sh: the DocC catalogs of PageStat and PageStatCore build without warnings"

# Tests that turn a swap area of their own on and off run on their own, after the rest: swapoff
# brings back into memory every page that went to that area, including pages other tests (or
# their child processes) had just paged out, which would then read present where those tests
# arranged swapped.
swap_area_tests='swapLocationsHoldThePages|largeFolioSwappedWholeIsOneRun|showAndRawPointAtThePagesBytes'
if [ $# -gt 0 ]; then
    swift test --disable-xctest "$@"
else
    swift test --disable-xctest --skip "$swap_area_tests"
    swift test --disable-xctest --filter "$swap_area_tests"
fi

# The kernel matrix (Scripts/kernel-matrix.sh): pagestat's checks on Debian's 6.1 and 6.12 cloud
# kernels under QEMU and on this host's kernel; about a minute once the kernels are cached, plus a
# release build. As root it installs what it needs with apt-get. A developer may skip it with
# PAGESTAT_SKIP_KERNEL_MATRIX=1; CI (CI=true) always runs it.
if [ "${CI:-}" != true ] && [ "${PAGESTAT_SKIP_KERNEL_MATRIX:-}" = 1 ]; then
    echo "test.sh: kernel matrix NOT RUN (PAGESTAT_SKIP_KERNEL_MATRIX=1)"
elif [ "$(id -u)" != 0 ]; then
    echo "test.sh: kernel matrix NOT RUN: it needs root (apt-get, and the host's doctor --verify)" >&2
    [ "${CI:-}" != true ] || exit 1
else
    missing=()
    command -v qemu-system-x86_64 > /dev/null || missing+=(qemu-system-x86)
    if ! command -v busybox > /dev/null || ldd "$(command -v busybox)" > /dev/null 2>&1; then
        missing+=(busybox-static)
    fi
    command -v cpio > /dev/null || missing+=(cpio)
    command -v mkfs.ext4 > /dev/null || missing+=(e2fsprogs)
    command -v xz > /dev/null || missing+=(xz-utils)
    command -v python3 > /dev/null || missing+=(python3)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "test.sh: installing ${missing[*]} for the kernel matrix"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
    fi
    bash Scripts/kernel-matrix.sh
fi
