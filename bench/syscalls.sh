#!/usr/bin/env bash
# Per-run footprint of berth-runtime, runc and crun on a busybox `true` bundle:
# syscalls of one `RUNTIME run` (strace -c -f, all processes, payload included)
# and peak RSS (/usr/bin/time -v "Maximum resident set size": the largest
# single process the runtime waited for; median of BENCH_RSS_RUNS, default 5).
# Writes bench/results/strace-NAME.txt and syscalls-summary.md, prints the summary.
source "$(dirname "$0")/lib.sh"

rss_runs=${BENCH_RSS_RUNS:-5}
declare -A calls errors rss

for n in "${names[@]}"; do
    out=$results/strace-$n.txt
    sh -c "$(run_cmd "$n" "strace-$n-\$\$" | sed "s|^$work/wrap |$work/wrap strace -f -c -o $out |")" </dev/null
    # The total line reads: 100.00 SECONDS USECS/CALL CALLS [ERRORS] total
    calls[$n]=$(awk '$NF == "total" { print $4 }' "$out")
    errors[$n]=$(awk '$NF == "total" { print (NF == 6 ? $5 : 0) }' "$out")

    samples=()
    for i in $(seq "$rss_runs"); do
        tv=$work/time-$n-$i.txt
        sh -c "$(run_cmd "$n" "rss-$n-$i-\$\$" | sed "s|^$work/wrap |$work/wrap /usr/bin/time -v -o $tv |")" </dev/null
        samples+=("$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tv")")
    done
    rss[$n]=$(printf '%s\n' "${samples[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
done

{
    echo "### Syscalls and peak RSS of one \`RUNTIME run\` (busybox \`true\`)"
    echo
    echo "$(host_line); strace -c -f of one run; peak RSS is the median of $rss_runs runs."
    echo
    echo "| runtime | syscalls | failed syscalls | peak RSS |"
    echo "|---|---|---|---|"
    for n in "${names[@]}"; do
        echo "| $n | ${calls[$n]} | ${errors[$n]} | ${rss[$n]} KiB |"
    done
    echo
    echo "Ratios of syscalls:"
    echo
    ratio_lines calls
    echo
    echo "Ratios of peak RSS:"
    echo
    ratio_lines rss
    echo
    echo "Top syscalls per runtime are in bench/results/strace-NAME.txt."
} | tee "$results/syscalls-summary.md"
