#!/usr/bin/env bash
# Start-up of whole processes, side by side in one run (BENCHMARKS.md, "Start-up").
#
#   Scripts/startup.sh [RUNS] [PAGESTAT...]
#
# Times `PAGESTAT show --pid PID --format json` on a `sleep` for each PAGESTAT given (default: the
# release build), next to `dd` reading one block of the same pagemap and Swift hello worlds linked
# three ways. Runs are interleaved (one of each command, RUNS times, after two warm-up rounds),
# stdout and stderr to /dev/null; the median, quartiles and minimum of each, in milliseconds.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-51}
shift || true
binaries=("$@")
[ ${#binaries[@]} -gt 0 ] || binaries=(.build/release/pagestat)

work=$(mktemp -d)
sleep 1000 &
sleeper=$!
trap 'kill $sleeper 2>/dev/null; rm -rf "$work"' EXIT

# A timer that spawns each command itself (posix_spawn, waitpid, CLOCK_MONOTONIC): no shell
# between the clock reads.
cat > "$work/spawntime.c" <<'EOF'
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
extern char **environ;
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {  /* spawntime N cmd args :: cmd args :: ... */
    int n = atoi(argv[1]), nc = 0;
    char **cmds[64];
    cmds[nc++] = &argv[2];
    for (int i = 2; i < argc; i++) if (!strcmp(argv[i], "::")) { argv[i] = NULL; cmds[nc++] = &argv[i + 1]; }
    double *t = calloc((size_t)nc * n, sizeof(double));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    for (int r = -2; r < n; r++) for (int c = 0; c < nc; c++) {
        struct timespec a, b; pid_t p; int st;
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (posix_spawn(&p, cmds[c][0], &fa, NULL, cmds[c], environ)) { perror(cmds[c][0]); return 1; }
        waitpid(p, &st, 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (r >= 0) t[c * n + r] = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
    }
    for (int c = 0; c < nc; c++) {
        double *x = &t[c * n];
        qsort(x, n, sizeof(double), cmp);
        printf("median %6.3f ms (p25 %6.3f, p75 %6.3f, min %6.3f)  ", x[n / 2], x[n / 4], x[3 * n / 4], x[0]);
        for (char **a = cmds[c]; *a; a++) printf("%s ", *a);
        printf("\n");
    }
    return 0;
}
EOF
cc -O2 -o "$work/spawntime" "$work/spawntime.c"
echo 'print("hello")' > "$work/hello.swift"
swiftc -O "$work/hello.swift" -o "$work/hello-dynamic" 2>/dev/null
swiftc -O -static-stdlib "$work/hello.swift" -o "$work/hello-static-stdlib" 2>/dev/null
swiftc -O -static-executable "$work/hello.swift" -o "$work/hello-static-executable" 2>/dev/null

commands=()
for binary in "${binaries[@]}"; do
    commands+=("$(realpath "$binary")" show --pid "$sleeper" --format json ::)
done
"$work/spawntime" "$runs" "${commands[@]}" \
    /bin/dd if=/proc/$sleeper/pagemap of=/dev/null count=1 :: \
    "$work/hello-dynamic" :: "$work/hello-static-stdlib" :: "$work/hello-static-executable"
