#!/bin/sh
# Runs the task demo on a small input and checks its report.
out=$(./examples/tasks_channels 200000) || { echo "$out"; exit 1; }
echo "$out"
echo "$out" | grep -q "primes: 17984 (serial check: 17984) OK" &&
echo "$out" | grep -q "job 1: sensor offline" &&
echo "$out" | grep -q "job 3: sensor offline"
