#!/usr/bin/env bash
# Builds pagestat in release mode and installs it into PREFIX (default /usr/local): the binary,
# bash, zsh and fish completions (from the binary's own --generate-completion-script), and a
# man page from swift-argument-parser's generate-manual plugin (built offline from the package's
# dependencies). DESTDIR stages the installation elsewhere, as packagers expect.
#
#   sudo bash Scripts/install.sh                      # into /usr/local
#   PREFIX=$HOME/.local bash Scripts/install.sh       # no root needed
#   bash Scripts/install.sh --uninstall               # removes what it installs
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="${PREFIX:-/usr/local}"
root="${DESTDIR:-}$prefix"
bin="$root/bin/pagestat"
bash_completion="$root/share/bash-completion/completions/pagestat"
zsh_completion="$root/share/zsh/site-functions/_pagestat"
fish_completion="$root/share/fish/vendor_completions.d/pagestat.fish"
manual="$root/share/man/man1/pagestat.1"

if [ "${1:-}" = --uninstall ]; then
    rm -fv "$bin" "$bash_completion" "$zsh_completion" "$fish_completion" "$manual"
    exit 0
elif [ $# -gt 0 ]; then
    echo "usage: [PREFIX=DIR] [DESTDIR=DIR] bash Scripts/install.sh [--uninstall]" >&2
    exit 64
fi

echo "install.sh: building pagestat (swift build -c release; the first build takes a few minutes)..."
swift build -c release --product pagestat
built="$(swift build -c release --show-bin-path)/pagestat"

echo "install.sh: installing the binary and the bash, zsh and fish completions..."
install -D -m 755 "$built" "$bin"
for shell in bash zsh fish; do
    case $shell in
        bash) target=$bash_completion ;;
        zsh) target=$zsh_completion ;;
        fish) target=$fish_completion ;;
    esac
    install -d "$(dirname "$target")"
    "$built" --generate-completion-script "$shell" > "$target"
    chmod 644 "$target"
done

# The man page: swift-argument-parser's plugin renders the same help as the binary's --help.
pages=".build/plugins/GenerateManual/outputs/pagestat"
rm -rf "$pages"
echo "install.sh: generating the man page (swift package generate-manual; a minute or two the first time)..."
if swift package generate-manual --configuration release > /dev/null 2>&1 && [ -f "$pages/pagestat.1" ]; then
    # generate-manual writes the discussions' blank lines as they are; mdoc wants .Pp between
    # paragraphs (a blank line is a warning in man's view of the page).
    sed -i 's/^$/.Pp/' "$pages/pagestat.1"
    install -D -m 644 "$pages/pagestat.1" "$manual"
    bash Scripts/check-manual.sh "$pages/pagestat.1" || echo "install.sh: warning: the man page has formatting warnings (above)" >&2
else
    echo "install.sh: warning: the man page could not be generated (swift package generate-manual failed); skipped" >&2
fi

echo "installed pagestat $("$built" --version) into $root:"
for file in "$bin" "$bash_completion" "$zsh_completion" "$fish_completion" "$manual"; do
    [ -e "$file" ] && echo "  $file"
done
case ":$PATH:" in
    *":$prefix/bin:"*) ;;
    *) echo "note: $prefix/bin is not on PATH" ;;
esac
