#!/usr/bin/env bash
# Times `RUNTIME run` of a busybox `true` bundle for berth-runtime, runc and
# crun side by side in one hyperfine run, each in the same wrapper (lib.sh).
# Writes bench/results/runtime.{json,md} (hyperfine) and runtime-summary.md
# (medians and ratios, ready for BENCHMARKS.md), and prints the summary.
#   BENCH_RUNS (default 100), BENCH_WARMUP (default 10); see lib.sh for the rest.
source "$(dirname "$0")/lib.sh"

runs=${BENCH_RUNS:-100}
warmup=${BENCH_WARMUP:-10}

# Each iteration runs in a fresh `sh -c`, so `$$` gives every container a unique ID.
args=()
for n in "${names[@]}"; do
    args+=(--command-name "$n" "$(run_cmd "$n" "bench-$n-\$\$")")
done
hyperfine --warmup "$warmup" --runs "$runs" --style basic \
    --export-json "$results/runtime.json" \
    --export-markdown "$results/runtime.md" \
    "${args[@]}"

declare -A median
for n in "${names[@]}"; do
    median[$n]=$(jq -r --arg n "$n" '.results[] | select(.command == $n) | .median * 1000' "$results/runtime.json")
done

{
    echo "### \`RUNTIME run\` of a busybox \`true\` bundle"
    echo
    echo "$(host_line); hyperfine, $runs runs after $warmup warmups, one run for all runtimes; each wrapped alike (private mount namespace)."
    echo
    echo "| runtime | version | median | mean ± σ | min | max |"
    echo "|---|---|---|---|---|---|"
    for n in "${names[@]}"; do
        jq -r --arg n "$n" --arg v "$(version_line "$n")" '.results[] | select(.command == $n) |
            "| \($n) | \($v) | \(.median * 1000 * 100 | round / 100) ms | \(.mean * 1000 * 100 | round / 100) ± \(.stddev * 1000 * 100 | round / 100) ms | \(.min * 1000 * 100 | round / 100) ms | \(.max * 1000 * 100 | round / 100) ms |"' \
            "$results/runtime.json"
    done
    echo
    echo "Ratios of medians (lower is faster):"
    echo
    ratio_lines median
} | tee "$results/runtime-summary.md"
