#!/usr/bin/env bash
# check-glibc.sh BINARY MAX [MAX_GLIBCXX]: exit 1 when BINARY needs a glibc symbol
# version newer than MAX (e.g. 2.35, Ubuntu 22.04's glibc), naming the newest it
# needs and the symbols that need it, or (with MAX_GLIBCXX, e.g. 3.4.30, Ubuntu
# 22.04's libstdc++) a C++ runtime version newer than that; exit 0 otherwise.
# Prints what it found either way.
#
# The versions come from the binary's version-needs section (`readelf -V`): the
# dynamic loader refuses to start a binary whose GLIBC_x.y needs the system's
# glibc does not define ("version `GLIBC_2.36' not found").
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 BINARY MAX_GLIBC_VERSION [MAX_GLIBCXX_VERSION]   (e.g. $0 dist/hearth 2.35 3.4.30)" >&2
    exit 2
fi
bin=$1 max=$2 max_cxx=${3:-}
[[ $max =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] || { echo "check-glibc: MAX must be like 2.35 (got '$max')" >&2; exit 2; }
[ -z "$max_cxx" ] || [[ $max_cxx =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "check-glibc: MAX_GLIBCXX must be like 3.4.30 (got '$max_cxx')" >&2; exit 2; }
[ -f "$bin" ] || { echo "check-glibc: $bin: no such file" >&2; exit 2; }
command -v readelf >/dev/null || { echo "check-glibc: readelf is missing (Debian package binutils)" >&2; exit 2; }
if [ "$(head -c 4 "$bin" | od -An -c | tr -d ' ')" != '177ELF' ]; then
    echo "check-glibc: $bin is not an ELF binary" >&2
    exit 1
fi

# "Name: GLIBC_2.34  Flags: none  Version: 7" lines; GLIBC_PRIVATE has no number.
versions=$(LC_ALL=C readelf -V --wide "$bin" | { grep -o 'Name: GLIBC_[0-9][0-9.]*' || true; } | sed 's/Name: GLIBC_//' | sort -u -V)
libs=$(LC_ALL=C readelf -d --wide "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | paste -sd' ')
if [ -z "$versions" ]; then
    echo "check-glibc: $bin needs no versioned glibc symbol (static or not linked to glibc); libraries: ${libs:-none}"
    exit 0
fi
newest=$(tail -n1 <<<"$versions")
oldest=$(head -n1 <<<"$versions")
summary="$bin needs GLIBC $oldest .. $newest (versions: $(paste -sd' ' <<<"$versions")); libraries: $libs"
glibcxx=$(LC_ALL=C readelf -V --wide "$bin" | { grep -o 'Name: GLIBCXX_[0-9][0-9.]*' || true; } | sed 's/Name: GLIBCXX_//' | sort -u -V | tail -n1)
[ -z "$glibcxx" ] || summary="$summary; newest GLIBCXX $glibcxx"

if [ "$(printf '%s\n%s\n' "$newest" "$max" | sort -V | tail -n1)" != "$max" ]; then
    echo "check-glibc: FAIL: $summary" >&2
    too_new=$(printf '%s\n' "$versions" | while read -r v; do
        [ "$(printf '%s\n%s\n' "$v" "$max" | sort -V | tail -n1)" = "$max" ] || printf 'GLIBC_%s ' "$v"
    done)
    # objdump -T names the symbols: "... (GLIBC_2.36) arc4random".
    syms=$(LC_ALL=C objdump -T "$bin" 2>/dev/null | awk -v re="$(sed 's/ *$//; s/ /|/g; s/\./\\./g' <<<"$too_new")" \
        '$0 ~ "\\((" re ")\\)" {print $NF}' | sort -u | head -n 10 | paste -sd' ')
    echo "check-glibc: newest is GLIBC_$newest, above the allowed $max: it does not start on a system with glibc $max (needs ${too_new% }${syms:+: $syms})" >&2
    exit 1
fi
if [ -n "$max_cxx" ] && [ -n "$glibcxx" ] &&
    [ "$(printf '%s\n%s\n' "$glibcxx" "$max_cxx" | sort -V | tail -n1)" != "$max_cxx" ]; then
    echo "check-glibc: FAIL: $summary" >&2
    echo "check-glibc: newest is GLIBCXX_$glibcxx, above the allowed $max_cxx: it does not start where libstdc++ is that old (\`GLIBCXX_$glibcxx' not found); build it with an older g++" >&2
    exit 1
fi
echo "check-glibc: ok: $summary; at most $max${max_cxx:+ and GLIBCXX $max_cxx} allowed"
