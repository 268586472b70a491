#!/usr/bin/env bash
# Same-run medians: the log-transformed model F on the cents file, before
# (an older binary, $OLD: e.g. one built at 7fc28a5) and after the table
# logarithm, beside the untransformed model; first pass, 1 and 2 threads.
#
#     OLD=/path/to/older/gramfit bash scripts/bench_log.sh
X="bedrooms + bathrooms + size_sqft + min_to_subway + floor + building_age_yrs + no_fee + has_roofdeck + has_washer_dryer + has_doorman + has_elevator + has_dishwasher + has_patio + has_gym"
cd "$(dirname "$0")/.."
f=bench-data/listings-10m-cents.parquet  # made by scripts/bench_isa.py
for t in 1 2; do
  for i in 1 2 3 4 5; do
    variants=("new|./target/release/gramfit|np.log(rent)" "plain|./target/release/gramfit|rent")
    if [ -n "${OLD:-}" ]; then variants=("old|$OLD|np.log(rent)" "${variants[@]}"); fi
    for v in "${variants[@]}"; do
      IFS='|' read -r name exe y <<< "$v"
      s=$( { /usr/bin/time -f "%e" $exe fit $f -f "$y ~ $X" --no-second-pass -q --threads $t > /dev/null; } 2>&1 )
      echo "$t $name $s"
    done
  done
done | python3 -c "
import sys, statistics, collections
d = collections.defaultdict(list)
for line in sys.stdin:
    t, n, s = line.split(); d[(t, n)].append(float(s))
for (t, n), v in sorted(d.items()):
    print(f'{t} thread(s) {n:6s} median {statistics.median(v):.2f} s  ({len(v)} runs)')
"
