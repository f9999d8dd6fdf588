#!/usr/bin/env bash
# The whole test suite, as the README says to run it.
#
# Tests that need swap and root run on real, swapped-out memory. Run as root with no swap on, this
# script turns on a temporary swap file for the run and removes it afterwards, also when a test
# fails or the run is interrupted. A test that needs what this machine or user lacks (root, swap,
# BPF, a tool, a kernel feature) is reported NOT RUN and counted, never passed; under CI (CI=true,
# which .ci/run sets) every test runs or fails. The last lines sum up the whole run: Swift tests,
# the script's own checks, the kernel matrix, and what was installed or cached; the very last is
# "total: N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."

swapfile=""
swapnote=""
external=""
summarized=""
installed=()
remove_swap() {
    if [ -n "$swapfile" ]; then
        swapoff "$swapfile" 2>/dev/null || true
        rm -f "$swapfile"
        swapnote="turned on for the run and removed again: $swapfile"
        echo "test.sh: removed the temporary swap file $swapfile"
        swapfile=""
    fi
}
cleanup() {
    status=$?
    if [ -n "$external" ]; then rm -rf "$external"; fi
    remove_swap
    if [ -z "$summarized" ]; then
        echo "test.sh: stopped before the end (status $status); nothing after the step above ran"
        echo "total: 0 passed, 1 failed"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

logs=.build/test-logs
mkdir -p "$logs"

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

# Debian packages that some tests need: as root, installed when missing; without root, those
# tests are reported as NOT RUN. Usage: need_packages "WHAT NEEDS THEM" PACKAGE...
need_packages() {
    local why=$1
    shift
    [ $# -gt 0 ] || return 0
    if [ "$(id -u)" = 0 ]; then
        echo "test.sh: installing $* for $why"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" > /dev/null
        installed+=("$@")
    else
        echo "test.sh: WARNING: $* missing and not root: $why will be reported as NOT RUN" >&2
    fi
}

# The map tests rasterize pagestat's SVG with a real renderer (rsvg-convert) and read its pixels
# with python3.
picture_tools=()
command -v rsvg-convert > /dev/null || picture_tools+=(librsvg2-bin)
command -v python3 > /dev/null || picture_tools+=(python3)
need_packages "the map tests" "${picture_tools[@]}"

# The exporter's end-to-end test scrapes it with a real Prometheus server, and its unit tests run
# promtool on the exposition: Debian's prometheus package.
prometheus_tools=()
{ command -v prometheus > /dev/null && command -v promtool > /dev/null; } || prometheus_tools+=(prometheus)
need_packages "the exporter's end-to-end test" "${prometheus_tools[@]}"

# The exporter's TLS and basic-auth tests make a self-signed certificate with openssl and bcrypt
# hashes with htpasswd (Debian's apache2-utils), and scrape with curl.
web_tools=()
command -v openssl > /dev/null || web_tools+=(openssl)
command -v htpasswd > /dev/null || web_tools+=(apache2-utils)
command -v curl > /dev/null || web_tools+=(curl)
need_packages "the exporter's TLS and basic-auth tests" "${web_tools[@]}"

# The swap slot reader's tests arrange every backend they can: swap files on ext4 on a loop
# device, a swap partition on a loop device, and a btrfs file system for its refusal.
backend_tools=()
command -v mkfs.ext4 > /dev/null || backend_tools+=(e2fsprogs)
command -v mkfs.btrfs > /dev/null || backend_tools+=(btrfs-progs)
command -v losetup > /dev/null || backend_tools+=(mount)
need_packages "the swap slot reader's backend tests" "${backend_tools[@]}"

# The project's own sources build without a warning: a warning from a file under Sources/, Tests/
# or Examples/ fails the run (dependencies' warnings are theirs). Only the files a build compiles
# can warn: on a clean clone, all of them.
# The release build of `pagestat` is checked too: the optimizer warns where a debug build does not
# (a dangling pointer, say). The kernel matrix builds the same product, so with it this costs
# nothing more; without it, a release build of pagestat.
mkdir -p .build
fail_on_own_warnings() {  # LOG WHICH
    local own_warnings
    own_warnings=$(grep -E "^$PWD/(Sources|Tests|Examples)/[^:]+:[0-9]+:[0-9]+: warning:" "$1" | sort -u || true)
    if [ -n "$own_warnings" ]; then
        echo "$own_warnings" >&2
        echo "test.sh: FAILED: the $2 printed $(grep -c . <<< "$own_warnings") warnings in the project's own sources" >&2
        exit 1
    fi
}
swift build --build-tests 2>&1 | tee .build/test-sh-build.log
fail_on_own_warnings .build/test-sh-build.log build
swift build -c release --product pagestat 2>&1 | tee .build/test-sh-release-build.log
fail_on_own_warnings .build/test-sh-release-build.log "release build of pagestat"

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

# The DocC catalogs build, without a warning (a broken symbol link is one). docc copies its HTML
# template into the archive keeping the template's owner, which a user other than the
# toolchain's owner may not (fchown: EPERM): such a user gets a copy of the template of its own.
template=$(dirname "$(command -v docc || echo /opt/swift/usr/bin/docc)")/../share/docc/render
if [ -z "${DOCC_HTML_DIR:-}" ] && [ -d "$template" ] && [ ! -O "$template" ]; then
    rm -rf .build/docc-render
    mkdir -p .build
    cp -r "$template" .build/docc-render
    export DOCC_HTML_DIR="$PWD/.build/docc-render"
fi
for target in PageStat PageStatCore; do
    docs=$(swift package generate-documentation --target "$target" 2>&1) || { echo "$docs" >&2; exit 1; }
    # SwiftPM's own word about a user without a writable home is not the catalog's.
    docs=$(grep -v "disabling user-level cache features" <<< "$docs" || true)
    if grep -q "warning:" <<< "$docs"; then
        echo "test.sh: generate-documentation --target $target warns:" >&2
        grep -A3 "warning:" <<< "$docs" >&2
        exit 1
    fi
done
echo "test.sh: the DocC catalogs of PageStat and PageStatCore build without warnings"
script_checks=2  # the library example in a package of its own, and the DocC catalogs

# Tests that turn a swap area of their own on and off run on their own, after the rest: swapoff
# brings back into memory every page that went to that area, including pages other tests (or
# their child processes) had just paged out, which would then read present where those tests
# arranged swapped.
# They run one at a time (--no-parallel): two of them at once would swap off each other's pages.
swap_area_tests='swapLocationsHoldThePages|largeFolioSwappedWholeIsOneRun|showAndRawPointAtThePagesBytes|plainShowLocatesEverySwappedSharedPage|SnapshotTests|SwapSlotReaderTests'
# Each run's output is kept in $logs (the summary counts from it); a failure does not stop the
# script before the summary.
swift_status=0
run_swift_tests() {
    local log=$1
    shift
    set +e
    swift test --disable-xctest "$@" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    set -e
    if [ "$status" != 0 ]; then swift_status=$status; fi
}
rm -f "$logs"/swift-*.log
if [ $# -gt 0 ]; then
    run_swift_tests "$logs/swift-tests.log" "$@"
else
    run_swift_tests "$logs/swift-tests.log" --skip "$swap_area_tests"
    echo "test.sh: now, in a run of their own and one at a time, the tests that turn a swap area of their own on and off (swapoff would swap back in the pages the other tests paged out)"
    run_swift_tests "$logs/swift-swap-area-tests.log" --no-parallel --filter "$swap_area_tests"
fi

# Output identity (Scripts/output-identity.sh): every command's text, JSON, CSV, Prometheus and
# SVG on layouts arranged for real, byte for byte against the commit in Scripts/output-baseline
# (built once into /var/cache/pagestat-baseline). It needs root; CI always runs it.
identity_result=""
identity_status=0
if [ "$(id -u)" != 0 ]; then
    identity_result="NOT RUN: it needs root (namespaces, paged-out memory, PFNs)"
    echo "test.sh: output identity $identity_result" >&2
    if [ "${CI:-}" = true ]; then identity_result="FAILED: under CI=true it must run, and it needs root"; identity_status=1; fi
else
    set +e
    bash Scripts/output-identity.sh 2>&1 | tee "$logs/output-identity.log"
    identity_status=${PIPESTATUS[0]}
    set -e
    identity_result=$(grep '^output-identity: \(all [0-9]* comparisons\|[0-9]* of [0-9]* comparisons differ\)' "$logs/output-identity.log" | tail -1 | sed 's/^output-identity: //')
    if [ "$identity_status" != 0 ]; then
        identity_result="FAILED (status $identity_status): ${identity_result:-see $logs/output-identity.log}"
    fi
fi

# The kernel matrix (Scripts/kernel-matrix.sh): pagestat's checks on Debian's 6.1 and 6.12 cloud
# kernels under QEMU and on this host's kernel; about a minute once the kernels are cached, plus a
# release build. As root it installs what it needs with apt-get. A developer may skip it with
# PAGESTAT_SKIP_KERNEL_MATRIX=1; CI (CI=true) always runs it.
matrix_result=""
matrix_status=0
if [ "${CI:-}" != true ] && [ "${PAGESTAT_SKIP_KERNEL_MATRIX:-}" = 1 ]; then
    matrix_result="NOT RUN (PAGESTAT_SKIP_KERNEL_MATRIX=1)"
    echo "test.sh: kernel matrix $matrix_result"
elif [ "$(id -u)" != 0 ]; then
    matrix_result="NOT RUN: it needs root (apt-get, and the host's doctor --verify)"
    echo "test.sh: kernel matrix $matrix_result" >&2
    if [ "${CI:-}" = true ]; then matrix_result="FAILED: under CI=true it must run, and it needs root"; matrix_status=1; fi
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
        installed+=("${missing[@]}")
    fi
    set +e
    bash Scripts/kernel-matrix.sh 2>&1 | tee "$logs/kernel-matrix.log"
    matrix_status=${PIPESTATUS[0]}
    set -e
    matrix_result=$(sed -n 's/^kernel-matrix: \([0-9]* passed, [0-9]* failed.*\)$/\1/p' "$logs/kernel-matrix.log" | tail -1)
    if [ -z "$matrix_result" ]; then
        matrix_result="FAILED: it ended (status $matrix_status) before its closing line; see $logs/kernel-matrix.log"
    elif [ "$matrix_status" != 0 ]; then
        matrix_result="$matrix_result (status $matrix_status)"
    fi
fi
remove_swap

# The summary, counted from what Swift Testing printed for each test: "✔ Test x() passed after",
# "✘ Test x() failed after", "➜ Test x() skipped: "NOT RUN: ..."" (a missing requirement) or
# skipped for another reason (a helper mode or an opt-in benchmark), "➜ Test x() was cancelled".
# Under CI a missing requirement is recorded as an issue naming "NOT RUN under CI=true" and the
# test does not start, so it has no "failed" line of its own: those are counted as failed too,
count() { cat "$logs"/swift-*.log 2>/dev/null | grep -cE "$1" || true; }
swift_passed=$(count '^✔ Test .* passed after' )
swift_passed=$((swift_passed - $(count '^✔ Test run with [0-9]+ tests? ')))
swift_failed=$(count '^✘ Test .* failed after')
swift_failed=$((swift_failed - $(count '^✘ Test run with [0-9]+ tests? ')))
# ...unless the test had started (notRunHere inside it): then it has a "failed" line already.
strict_only=$(cat "$logs"/swift-*.log 2>/dev/null | awk '
    /^✘ Test .* failed after / && !/^✘ Test run with [0-9]+ tests? / {
        name = $0; sub(/^✘ Test /, "", name); sub(/ (with [0-9]+ test cases? )?failed after .*/, "", name); failed[name] = 1 }
    /^✘ Test .* recorded an issue.*NOT RUN under CI=true/ {
        name = $0; sub(/^✘ Test /, "", name); sub(/ recorded an issue.*/, "", name); strict[name] = 1 }
    END { n = 0; for (name in strict) if (!(name in failed)) n++; print n }')
swift_failed=$((swift_failed + strict_only))
swift_not_run=$(( $(count '^➜ Test .* skipped: "NOT RUN') + $(count '^➜ Test .* was cancelled') ))
swift_skipped=$(( $(count '^➜ Test .* skipped') - $(count '^➜ Test .* skipped: "NOT RUN') ))
swift_note=""
if [ "$swift_status" != 0 ] && [ "$swift_failed" = 0 ]; then
    swift_failed=1
    swift_note=" (swift test exited with status $swift_status without a failed test: a build failure or a crash; see $logs)"
fi
matrix_passed=0; matrix_failed=0; matrix_skipped=0
case "$matrix_result" in
    NOT\ RUN*) matrix_skipped=1 ;;
    FAILED*) matrix_failed=1 ;;
    *) matrix_passed=$(sed -n 's/^\([0-9]*\) passed.*/\1/p' <<< "$matrix_result")
       matrix_failed=$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<< "$matrix_result")
       matrix_skipped=$(sed -n 's/.* \([0-9]*\) skipped.*/\1/p' <<< "$matrix_result")
       matrix_skipped=${matrix_skipped:-0}
       if [ "$matrix_status" != 0 ] && [ "$matrix_failed" = 0 ]; then matrix_failed=1; fi ;;
esac

echo
echo "test.sh: summary"
echo "  Swift tests: $swift_passed passed, $swift_failed failed$swift_note, $swift_not_run NOT RUN, $swift_skipped skipped on purpose (helper modes, opt-in benchmarks); logs in $logs"
if [ "$swift_failed" -gt 0 ]; then
    # Each failed test by name, with the first issue it recorded: the summary is often all a CI
    # log keeps.
    echo "  failed, with each one's first recorded issue:"
    cat "$logs"/swift-*.log 2>/dev/null | awk '
        /^✘ Test .* recorded an issue/ && !/^✘ Test run with / {
            name = $0; sub(/^✘ Test /, "", name); sub(/ recorded an issue.*/, "", name)
            if (!(name in first)) { issue = $0; sub(/^.* recorded an issue/, "recorded an issue", issue); first[name] = substr(issue, 1, 400); order[++n] = name } }
        END { for (i = 1; i <= n; i++) print "    " order[i] ": " first[order[i]] }'
fi
if [ "$swift_not_run" -gt 0 ]; then
    echo "  NOT RUN, by what was missing (each test is named on a NOT RUN line in the log):"
    cat "$logs"/swift-*.log | sed -n -e 's/^➜ Test .* skipped: "NOT RUN: \(.*\)"$/\1/p' \
        -e 's/^➜ Test .* was cancelled after .*: "NOT RUN: \(.*\)"$/\1/p' | sort | uniq -c | sort -rn | sed 's/^ */    /'
fi
echo "  the library example in a package of its own and the DocC catalogs: $script_checks passed"
echo "  output identity: $identity_result"
echo "  kernel matrix: $matrix_result"
if [ ${#installed[@]} -gt 0 ]; then
    echo "  installed by this run with apt-get: ${installed[*]} (apt-get remove ${installed[*]} takes them away)"
else
    echo "  installed by this run: nothing"
fi
kernels=${PAGESTAT_KERNEL_CACHE:-/var/cache/pagestat-kernels}
if [ -d "$kernels" ]; then
    echo "  cached: the kernel matrix's kernels in $kernels, $(du -sh "$kernels" 2>/dev/null | cut -f1) (kept for the next run; rm -rf $kernels removes them)"
fi
echo "  build products: .build (the tests' logs in $logs, the library example's build in .build/external-example)"
if [ -n "$swapnote" ]; then echo "  temporary swap file: $swapnote"; fi
identity_passed=0; identity_failed=0; identity_skipped=0
case "$identity_result" in
    NOT\ RUN*) identity_skipped=1 ;;
    FAILED*) identity_failed=1 ;;
    *) identity_passed=1 ;;
esac
total_passed=$((swift_passed + script_checks + identity_passed + matrix_passed))
total_failed=$((swift_failed + identity_failed + matrix_failed))
total_skipped=$((swift_not_run + swift_skipped + identity_skipped + matrix_skipped))
summarized=yes
echo "total: $total_passed passed, $total_failed failed, $total_skipped skipped"
[ "$total_failed" = 0 ]
