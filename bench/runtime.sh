#!/usr/bin/env bash
# Times `RUNTIME run` of a busybox `true` bundle for berth-runtime, runc and
# crun side by side, each in the same wrapper (lib.sh). The runs are split
# into rounds of hyperfine, each round with the runtimes in a rotated order,
# so that a slow spell of this shared VM (seen: crun's median moving from 6.1
# to 8.3 ms between back-to-back runs) lands on every runtime alike instead of
# on whichever hyperfine times during it. Every sample of every round counts.
# Writes bench/results/runtime.json (all samples, hyperfine's shape) and
# runtime-summary.md (medians and ratios, ready for BENCHMARKS.md), and prints
# the summary.
#   BENCH_RUNS (per runtime, default 100), BENCH_ROUNDS (default 10),
#   BENCH_WARMUP (per runtime, default 10), BENCH_SETTLE (seconds of quiet
#   before timing, default 10); see lib.sh for the rest.
source "$(dirname "$0")/lib.sh"

runs=${BENCH_RUNS:-100}
warmup=${BENCH_WARMUP:-10}
# BENCH_WRAP=once (default): hyperfine itself runs inside one wrapper, so every
# runtime shares one private mount namespace and only the runtime is timed.
# BENCH_WRAP=each: every single invocation is wrapped (adds the wrapper's own
# unshare+sh+mount cost, the same for all runtimes, to each sample).
wrap_mode=${BENCH_WRAP:-once}

# The kernel tears down each container's namespaces in worker threads after
# the runtime has exited; a run started right after another (or after a test
# suite) times that backlog too, and it lands on whichever runtime goes
# first. Let it drain first.
sleep "${BENCH_SETTLE:-10}"

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
rounds=${BENCH_ROUNDS:-10}
per_round=$(( (runs + rounds - 1) / rounds ))
round_warmup=$(( (warmup + rounds - 1) / rounds ))
n_names=${#names[@]}
for ((r = 0; r < rounds; r++)); do
    # Round r starts with runtime r mod n.
    rotated=()
    for ((k = 0; k < n_names; k++)); do
        j=$(( (r + k) % n_names ))
        rotated+=("${args[@]:$((3 * j)):3}")
    done
    if [ "$wrap_mode" = each ]; then
        hyperfine --warmup "$round_warmup" --runs "$per_round" --style none \
            --export-json "$work/round-$r.json" "${rotated[@]}" >/dev/null
    else
        "$work/wrap" hyperfine -N --warmup "$round_warmup" --runs "$per_round" --style none \
            --export-json "$work/round-$r.json" "${rotated[@]}" >/dev/null
    fi
done
# All rounds' samples per runtime, with hyperfine's summary fields.
jq -s '{results: ([.[].results[]] | group_by(.command) | map(
        (map(.times) | add | sort) as $t
        | ($t | length) as $n
        | ($t | add / $n) as $mean
        | {command: .[0].command, times: $t, mean: $mean,
           stddev: (($t | map((. - $mean) * (. - $mean)) | add) / ($n - 1) | sqrt),
           median: (if $n % 2 == 1 then $t[($n - 1) / 2] else ($t[$n / 2 - 1] + $t[$n / 2]) / 2 end),
           min: $t[0], max: $t[-1]}))}' "$work"/round-*.json >"$results/runtime.json"

declare -A median
for n in "${names[@]}"; do
    median[$n]=$(jq -r --arg n "$n" '.results[] | select(.command == $n) | .median * 1000' "$results/runtime.json")
done

{
    echo "### \`RUNTIME run\` of a busybox \`true\` bundle"
    echo
    echo "$(host_line); hyperfine, $((per_round * rounds)) runs per runtime in $rounds rounds of $per_round (order rotated each round, $round_warmup warmups each); wrapper mode \`$wrap_mode\` (private mount namespace, cgroup2 controllers hidden: see bench/lib.sh)."
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
