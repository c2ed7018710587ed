#!/bin/sh
# The conformance suite: the multi-process tests (remote calls, futures,
# channels, pools, pmap, the mesh, no-wait functions) run again with
# DISCO_TRANSPORT=$1, and must find their workers talking over $2
# (disco_transport_info: see test_transport_info in tests/test_mesh.c), so
# a silent fallback to TCP fails. The cases of every binary are merged into one TAP stream, named
# after their binary.
set -u
transport=$1 expect=$2
tests="test_cluster test_mesh test_rref test_pool test_pmap test_rdv test_nowait"
dir=$(dirname "$0")
[ -x "$dir/test_cluster" ] || dir=tests # run from the build tree
n=0
for t in $tests; do
    out=$(DISCO_TRANSPORT=$transport DISCO_EXPECT_TRANSPORT=$expect \
          CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 600 "$dir/$t" 2>&1)
    rc=$?
    plan=$(printf '%s\n' "$out" | sed -n 's/^1\.\.\([0-9]*\)$/\1/p' | head -1)
    got=0
    while IFS= read -r line; do
        case $line in
        "ok "*|"not ok "*)
            n=$((n + 1)); got=$((got + 1))
            status=${line%% [0-9]*}
            printf '%s %d - %s over %s: %s\n' "$status" "$n" "$t" "$transport" "${line#* - }" ;;
        "#"*) printf '%s\n' "$line" ;;
        *) printf '# %s\n' "$line" ;;
        esac
    done <<EOF
$out
EOF
    if [ "$rc" != 0 ] || [ "$got" != "${plan:-x}" ]; then
        n=$((n + 1))
        echo "not ok $n - $t over $transport: exit status $rc, $got of ${plan:-?} cases reported"
    fi
done
echo "1..$n"
