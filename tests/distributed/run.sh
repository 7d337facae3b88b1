#!/usr/bin/env bash
# Runs xgrad::distributed's checks with 2 local ranks under mpirun; ends with
# "N passed, M failed". Usage: tests/distributed/run.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: run.sh BUILD_DIR}
check="$build/tests/distributed_check"
# As root (containers, CI) Open MPI wants --allow-run-as-root; 2 ranks on fewer cores need
# --oversubscribe. Nothing here needs a network: the ranks share memory.
mpirun=(mpirun --allow-run-as-root --oversubscribe -np 2)
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

verdict() {  # name, ok (0/1), detail
    if [ "$2" -eq 1 ]; then
        echo "PASS  $1: $3"
        passed=$((passed + 1))
    else
        echo "FAIL  $1: $3"
        sed 's/^/      /' "$log" | tail -n 30
        failed=$((failed + 1))
    fi
}

# run NAME LIMIT ARGS...: the job's exit code in $rc, its wall seconds in $secs.
run() {
    local limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "${mpirun[@]}" "$@" > "$log" 2>&1
    rc=$?
    secs=$((SECONDS - start))
}

run equivalence 120 "$check" equivalence
ok=0; [ "$rc" -eq 0 ] && grep -q ': PASS$' "$log" && ok=1
verdict "2 ranks x batch 32 = 1 process x batch 64" "$ok" "$(grep -o 'max |difference|.*' "$log" || echo "exit $rc")"

# A rank killed mid-training: Open MPI's runtime notices and ends the job.
run die 120 "$check" die
ok=0; [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$secs" -lt 60 ] && grep -qi 'signal 9\|killed' "$log" && ok=1
verdict "a killed rank ends the job" "$ok" "exit $rc after ${secs} s"

# A rank that stops answering: the others' collective times out with xgrad's error.
run hang 120 -x XGRAD_DISTRIBUTED_TIMEOUT=5 "$check" hang
ok=0; [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$secs" -lt 60 ] && grep -q 'got no answer from the other ranks within 5 s' "$log" && ok=1
verdict "a hanging rank makes the others fail within the timeout" "$ok" "exit $rc after ${secs} s"

# The example under mpirun: 20 steps, evaluation over both ranks' halves of the test set.
if [ -x "$build/examples/fashion_mnist" ]; then
    run example 300 "$build/examples/fashion_mnist" --distributed --batch 32 --epochs 1 --max-batches 20 --quiet
    ok=0; [ "$rc" -eq 0 ] && [ "$(grep -c '^test accuracy' "$log")" -eq 1 ] && ok=1
    verdict "fashion_mnist --distributed (one report, from rank 0)" "$ok" "$(grep '^test accuracy' "$log" || echo "exit $rc")"
fi

# A bad timeout setting: every rank stops with xgrad's message, before MPI starts.
if [ -x "$build/examples/fashion_mnist" ]; then
    run bad-timeout 120 -x XGRAD_DISTRIBUTED_TIMEOUT=soon "$build/examples/fashion_mnist" --distributed --quiet
    ok=0; [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "XGRAD_DISTRIBUTED_TIMEOUT must be a positive number of seconds, got 'soon'" "$log" && ok=1
    verdict "XGRAD_DISTRIBUTED_TIMEOUT=soon is refused with a clear error" "$ok" "exit $rc after ${secs} s"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
