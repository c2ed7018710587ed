#!/bin/sh
# Runs the task demo on a small input and checks its report.
out=$(./examples/tasks_channels 200000) || { echo "$out"; exit 1; }
echo "$out"
echo "$out" | grep -q "primes: 17984 (serial check: 17984) OK" &&
echo "$out" | grep -q "job 1: sensor offline" &&
echo "$out" | grep -q "job 3: sensor offline" || exit 1
# A pmap parameter sweep on 4 workers: retries, on_error.
out=$(./examples/pmap_sweep) || { echo "$out"; exit 1; }
echo "$out"
echo "$out" | grep -q "64 parameters on 4 workers: 62 ok, 2 invalid" &&
echo "$out" | grep -q "fastest settling: zeta = " || exit 1
# The distributed demo on 4 real worker processes, with a small workload.
out=$(./examples/pi_workers 200000) || { echo "$out"; exit 1; }
echo "$out"
echo "$out" | grep -q "pi ~ 3.1" &&
echo "$out" | grep -q "remotecall_fetch round trip" || exit 1
# Julia's producer/consumer with RemoteChannels on 4 workers.
out=$(./examples/producer_consumer) || { echo "$out"; exit 1; }
echo "$out"
echo "$out" | grep -q "12 jobs done on 4 workers" &&
[ "$(echo "$out" | grep -c 'finished in')" -eq 12 ]
