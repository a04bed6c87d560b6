#!/usr/bin/env bash
# `make test-dist-check`: packaging/check-glibc.sh must refuse a binary that needs a
# newer glibc than allowed and accept one that needs only old symbols. Both are
# tiny C programs compiled here (Debian 12, glibc 2.36), in a second or so.
set -euo pipefail
cd "$(dirname "$0")/.."
check=packaging/check-glibc.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
expect() { # expect 0|1 BINARY MAX WHAT [MAX_GLIBCXX]
    local want=$1 bin=$2 max=$3 what=$4 got=0 msg
    msg=$(bash "$check" "$bin" "$max" ${5:+"$5"} 2>&1) || got=$?
    if [ "$got" = "$want" ]; then
        echo "ok   $what (max $max): exit $got: ${msg##*$'\n'}"
    else
        echo "FAIL $what (max $max): exit $got, expected $want: $msg"
        fail=1
    fi
}

# Linked here: __libc_start_main@GLIBC_2.34 (any program since glibc 2.34) and
# arc4random@GLIBC_2.36.
cat >"$work/new.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
int main(void) { printf("%u\n", arc4random()); return 0; }
C
gcc -O2 -o "$work/new" "$work/new.c"
# No C runtime start files: write and _exit, both GLIBC_2.2.5 on x86_64.
cat >"$work/old.c" <<'C'
#include <unistd.h>
void _start(void) { write(1, "ok\n", 3); _exit(0); }
C
gcc -O2 -nostartfiles -o "$work/old" "$work/old.c"
[ "$("$work/old")" = ok ] || { echo "FAIL the old-symbol fixture does not run"; exit 1; }

expect 1 "$work/new" 2.31 "a program linked on this machine (GLIBC_2.36), Debian 11's floor"
expect 1 "$work/new" 2.35 "the same program, Ubuntu 22.04's glibc"
expect 0 "$work/new" 2.36 "the same program, Debian 12's glibc"
expect 0 "$work/old" 2.31 "a program needing only GLIBC_2.2.5"
# The C++ runtime: a program needing GLIBCXX_3.4.99 from a library that defines that
# version node (as libstdc++ does its own), so the fixture does not depend on the
# g++ installed here.
cat >"$work/cxx.map" <<'MAP'
GLIBCXX_3.4.99 { global: hearth_cxx_new; local: *; };
MAP
cat >"$work/cxx.c" <<'C'
int hearth_cxx_new(void) { return 0; }
C
gcc -shared -fPIC -Wl,--version-script="$work/cxx.map" -o "$work/libcxxnew.so" "$work/cxx.c"
cat >"$work/usecxx.c" <<'C'
int hearth_cxx_new(void);
int main(void) { return hearth_cxx_new(); }
C
gcc -o "$work/usecxx" "$work/usecxx.c" -L"$work" -lcxxnew
expect 1 "$work/usecxx" 2.36 "a program needing GLIBCXX_3.4.99, Ubuntu 22.04's libstdc++" 3.4.30
expect 0 "$work/usecxx" 2.36 "the same program, no C++ limit given"
expect 0 "$work/old" 2.31 "a program needing no C++ runtime, with a C++ limit" 3.4.30
msg=$(bash "$check" "$work/usecxx" 2.36 3.4.30 2>&1) || true
case $msg in
*"newest is GLIBCXX_3.4.99, above the allowed 3.4.30"*) echo "ok   the refusal names GLIBCXX_3.4.99" ;;
*) echo "FAIL the refusal does not name GLIBCXX_3.4.99: $msg"; fail=1 ;;
esac
expect 1 "$check" 2.31 "a shell script (not ELF)"
expect 2 "$work/missing" 2.31 "a missing file"
# The checker names the newest version and the symbols that need it.
msg=$(bash "$check" "$work/new" 2.35 2>&1) || true
case $msg in
*"newest is GLIBC_2.36"*arc4random*) echo "ok   the refusal names GLIBC_2.36 and arc4random" ;;
*) echo "FAIL the refusal does not name GLIBC_2.36 and arc4random: $msg"; fail=1 ;;
esac
exit $fail
