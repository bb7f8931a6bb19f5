#!/usr/bin/env bash
# Times `RUNTIME run` of a busybox `true` bundle for berth-runtime, runc and
# crun side by side in one hyperfine run, each in the same wrapper (lib.sh).
# Writes bench/results/runtime.{json,md} (hyperfine) and runtime-summary.md
# (medians and ratios, ready for BENCHMARKS.md), and prints the summary.
#   BENCH_RUNS (default 100), BENCH_WARMUP (default 10); see lib.sh for the rest.
source "$(dirname "$0")/lib.sh"

runs=${BENCH_RUNS:-100}
warmup=${BENCH_WARMUP:-10}
# BENCH_WRAP=once (default): hyperfine itself runs inside one wrapper, so every
# runtime shares one private mount namespace and only the runtime is timed.
# BENCH_WRAP=each: every single invocation is wrapped (adds the wrapper's own
# unshare+sh+mount cost, the same for all runtimes, to each sample).
wrap_mode=${BENCH_WRAP:-once}

args=()
for n in "${names[@]}"; do
    if [ "$wrap_mode" = each ]; then
        # A fresh `sh -c` per iteration: `$$` gives every container a unique ID.
        args+=(--command-name "$n" "$(run_cmd "$n" "bench-$n-\$\$")")
    else
        # `run` deletes the container when it exits, so one ID per runtime serves
        # every sequential iteration; -N spares each sample a shell.
        args+=(--command-name "$n" "$(run_cmd "$n" "bench-$n" | sed "s|^$work/wrap ||")")
    fi
done
if [ "$wrap_mode" = each ]; then
    hyperfine --warmup "$warmup" --runs "$runs" --style basic \
        --export-json "$results/runtime.json" \
        --export-markdown "$results/runtime.md" \
        "${args[@]}"
else
    "$work/wrap" hyperfine -N --warmup "$warmup" --runs "$runs" --style basic \
        --export-json "$results/runtime.json" \
        --export-markdown "$results/runtime.md" \
        "${args[@]}"
fi

declare -A median
for n in "${names[@]}"; do
    median[$n]=$(jq -r --arg n "$n" '.results[] | select(.command == $n) | .median * 1000' "$results/runtime.json")
done

{
    echo "### \`RUNTIME run\` of a busybox \`true\` bundle"
    echo
    echo "$(host_line); hyperfine, $runs runs after $warmup warmups, one run for all runtimes; wrapper mode \`$wrap_mode\` (private mount namespace, cgroup2 controllers hidden: see bench/lib.sh)."
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
