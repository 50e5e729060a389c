#!/usr/bin/env bash
# The soak's short mode (README, "Soak"): about 3 minutes of load and faults
# on private clusters, then the checker; its last line is
# `soak: <deliveries> deliveries, <faults> faults, <violations> violations`.
# It must have done real work: thousands of deliveries, hundreds of faults.
source "$(dirname "$0")/../lib/integration.sh"
out=$("$REPO/tests/soak/run.sh" --duration 180 2>&1) && status=0 || status=$?
echo "$out" | tail -n 40
last=$(echo "$out" | tail -n 1)
expect "the soak finds no violation (exit status)" "$status" "0"
expect "its last line says so" "$(echo "$last" | sed -n 's/^soak: [0-9]* deliveries, [0-9]* faults, \([0-9]*\) violations$/\1/p')" "0"
deliveries=$(echo "$last" | sed -n 's/^soak: \([0-9]*\) deliveries.*/\1/p')
faults=$(echo "$last" | sed -n 's/.* \([0-9]*\) faults.*/\1/p')
expect "thousands of deliveries ($deliveries)" "$([ "${deliveries:-0}" -ge 2000 ] && echo yes)" "yes"
expect "hundreds of faults ($faults)" "$([ "${faults:-0}" -ge 200 ] && echo yes)" "yes"
finish
