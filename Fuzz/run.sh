#!/usr/bin/env bash
# libFuzzer over every /proc parser (Fuzz/ParserFuzzer.swift), seeded with the committed corpus
# that the property tests replay (Tests/PageStatTests/Fixtures/corpus).
#
#   bash Fuzz/run.sh [SECONDS]     # default 60; extra arguments after it go to libFuzzer
#
# The PageStat module is built with coverage instrumentation in .build/fuzz; new inputs go to
# .build/fuzz/corpus and crashes to .build/fuzz/crash-*. A crash worth keeping belongs in the
# committed corpus, with a test in ParserRegressionTests.swift that pins the right parse.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
build=.build/fuzz
debug="$build/debug"

swift build --build-path "$build" --target PageStatLab -Xswiftc -sanitize=fuzzer -Xcc -fsanitize=fuzzer-no-link
csystem=$(find .build/checkouts/swift-system "$build/checkouts/swift-system" -name module.modulemap -path '*CSystem*' 2>/dev/null | head -1)
# The lab's parsers are `package`: the fuzzer joins the package, under the name SwiftPM gives a
# root package (its folder's name, lowercased, other characters as '_').
package_name=$(basename "$PWD" | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9_]/_/g')
swiftc -sanitize=fuzzer -parse-as-library -package-name "$package_name" -I "$debug/Modules" \
    -Xcc -fmodule-map-file="$debug/CPagestat.build/module.modulemap" -Xcc -fmodule-map-file="$csystem" \
    Fuzz/ParserFuzzer.swift "$debug"/PageStat.build/*.o "$debug"/PageStatCore.build/*.o "$debug"/PageStatLab.build/*.o "$debug"/SystemPackage.build/*.o \
    "$debug"/CSystem.build/*.o "$debug"/CPagestat.build/*.o -o "$build/parser-fuzzer"

mkdir -p "$build/corpus"
seeds=(Tests/PageStatTests/Fixtures/corpus/*/ Tests/PageStatTests/Fixtures)
"$build/parser-fuzzer" -max_total_time="$seconds" -max_len=8192 -artifact_prefix="$build/" "$@" "$build/corpus" "${seeds[@]}"
