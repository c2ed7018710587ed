#!/bin/sh
# Builds tests/test_context.c with the hand-written aarch64 context switch
# and runs it under qemu-user: the switch for the other architecture is
# tested for real on this x86-64 machine. Skipped (77) without
# gcc-aarch64-linux-gnu and qemu-user.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
[ "$(uname -m)" = aarch64 ] && exit 77 # the native build already tests it
command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null || exit 77
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
aarch64-linux-gnu-gcc -std=gnu11 -O2 -Wall -Wextra -Werror -static \
    -I"$top/src" -o "$out/test_context" \
    "$top/tests/test_context.c" "$top/src/sched/context_make.c" \
    "$top/src/sched/context_aarch64.S" -lm || exit 1
timeout 120 qemu-aarch64 "$out/test_context"
