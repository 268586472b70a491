#!/usr/bin/env bash
# Same-run medians: model F on the cents file with a transformed term —
# np.log of the response, np.exp and a non-integer power of a predictor —
# before (an older binary, $OLD: e.g. one built at 7fc28a5) and after the
# table logarithm and exponential, beside the untransformed model; first
# pass, 1 and 2 threads.
#
#     OLD=/path/to/older/gramfit bash scripts/bench_log.sh
X="bedrooms + bathrooms + size_sqft + min_to_subway + floor + building_age_yrs + no_fee + has_roofdeck + has_washer_dryer + has_doorman + has_elevator + has_dishwasher + has_patio + has_gym"
cd "$(dirname "$0")/.."
f=bench-data/listings-10m-cents.parquet  # made by scripts/bench_isa.py
for t in 1 2; do
  for i in 1 2 3 4 5; do
    for m in "log|np.log(rent) ~ $X" "exp|rent ~ np.exp(min_to_subway / 100) + $X" \
        "pow|rent ~ I((min_to_subway + 1) ** 1.5) + $X" "plain|rent ~ $X"; do
      IFS='|' read -r model formula <<< "$m"
      exes=("new|./target/release/gramfit")
      if [ -n "${OLD:-}" ] && [ "$model" != plain ]; then exes+=("old|$OLD"); fi
      for e in "${exes[@]}"; do
        IFS='|' read -r name exe <<< "$e"
        s=$( { /usr/bin/time -f "%e" $exe fit $f -f "$formula" --no-second-pass -q --threads $t > /dev/null; } 2>&1 )
        echo "$t $model-$name $s"
      done
    done
  done
done | python3 -c "
import sys, statistics, collections
d = collections.defaultdict(list)
for line in sys.stdin:
    t, n, s = line.split(); d[(t, n)].append(float(s))
for (t, n), v in sorted(d.items()):
    print(f'{t} thread(s) {n:10s} median {statistics.median(v):.2f} s  ({len(v)} runs)')
"
