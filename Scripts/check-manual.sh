#!/usr/bin/env bash
# Checks a man page for formatting warnings, as `man` shows them to a reader: groff's mdoc
# macros with every warning on (-ww), and mandoc's lint where it is installed. Prints each
# warning and exits 1 if there is any.
#
#   bash Scripts/check-manual.sh .build/plugins/GenerateManual/outputs/pagestat/pagestat.1
set -euo pipefail
page="${1:?usage: bash Scripts/check-manual.sh PAGE.1}"
warnings=$(groff -mandoc -ww -z "$page" 2>&1 || true)
if command -v mandoc > /dev/null; then
    warnings+=$(mandoc -T lint -W warning "$page" 2>&1 || true)
fi
if [ -n "$warnings" ]; then
    echo "$warnings" >&2
    echo "check-manual.sh: $page: $(grep -c . <<< "$warnings") formatting warnings" >&2
    exit 1
fi
