"""Reference values of the elementary functions for gramfit's test of its
own (`src/elementary`): for each input, the two doubles that enclose the
exact value (mpmath at 320 bits; equal when the value is a double), and
numpy's result for comparison.

Usage: python3 elementary_reference.py OUT.json

OUT holds {"cases": [[function, p, x, below, above, numpy, nearest], ...],
"dd_cases": [[function, p, hi, lo, below, above], ...]} (an argument
hi + lo with a low word, as a product or quotient in a formula makes) with
every double as the hex string of its IEEE bits (`p` is the exponent of
`pow`, else null). Special inputs (zeros, negatives, ±inf, NaN, and inputs
whose result overflows or is NaN) take numpy's value as both bounds: numpy
follows C99's special values there.
"""
import json
import math
import random
import sys

import mpmath as mp
import numpy as np

mp.mp.prec = 320
MAX = sys.float_info.max


def bits(x):
    return format(np.float64(x).view(np.uint64), "016x")


def nearest(v, lo, hi):
    """The bound nearer to v (ties to the even one)."""
    if lo == hi:
        return lo
    half_ulp_past_max = mp.mpf(MAX) + mp.mpf(2) ** 970
    if hi == math.inf:
        return math.inf if v >= half_ulp_past_max else MAX
    if lo == -math.inf:
        return -math.inf if v <= -half_ulp_past_max else -MAX
    d = (mp.mpf(hi) - v) - (v - mp.mpf(lo))
    if d > 0:
        return lo
    if d < 0:
        return hi
    return lo if int(np.float64(lo).view(np.uint64)) % 2 == 0 else hi


def enclose(v):
    """The doubles just below and above the real number v (equal if v is one)."""
    if v > MAX:
        return MAX, math.inf
    if v < -MAX:
        return -math.inf, -MAX
    f = float(v)
    if mp.mpf(f) == v:
        return f, f
    if mp.mpf(f) < v:
        return f, math.nextafter(f, math.inf)
    return math.nextafter(f, -math.inf), f


def exact(name, p, x):
    x = x if isinstance(x, mp.mpf) else mp.mpf(x)
    if name == "ln":
        return mp.log(x)
    if name == "ln1p":
        return mp.log1p(x)
    if name == "log2":
        return mp.log(x, 2)
    if name == "log10":
        return mp.log10(x)
    if name == "exp":
        return mp.exp(x)
    if name == "sqrt":
        return mp.sqrt(x)
    if name == "pow":
        return mp.power(x, mp.mpf(p))
    raise ValueError(name)


NUMPY = {
    "ln": np.log,
    "ln1p": np.log1p,
    "log2": np.log2,
    "log10": np.log10,
    "exp": np.exp,
    "sqrt": np.sqrt,
}


def in_domain(name, p, x):
    if not math.isfinite(x):
        return False
    if name in ("ln", "log2", "log10"):
        return x > 0
    if name == "ln1p":
        return x > -1
    if name == "sqrt":
        return x >= 0
    if name == "pow":
        return x > 0
    return -745.5 < x < 709.78


def spread(rng, n, lo_exp, hi_exp, sign=1.0):
    """n doubles with exponents spread evenly over [lo_exp, hi_exp]."""
    out = []
    for _ in range(n):
        e = rng.randint(lo_exp, hi_exp)
        out.append(sign * math.ldexp(1.0 + rng.random(), e))
    return out


def inputs(rng, name):
    tiny = [5e-324, 1e-320, 2.2250738585072009e-308, 2.2250738585072014e-308]
    special = [0.0, -0.0, -1.0, 1.0, math.inf, -math.inf, math.nan, MAX, -MAX] + tiny + [-t for t in tiny]
    cents = [rng.randint(1, 10_000_000) / 100 for _ in range(500)]
    near_one = [1.0 + s * math.ldexp(rng.random(), -rng.randint(1, 60)) for s in (1, -1) for _ in range(400)]
    if name in ("ln", "log2", "log10", "sqrt"):
        xs = spread(rng, 2000, -1074, 1023) + near_one + cents + [float(k) for k in range(1, 300)]
        xs += [2.0**k for k in range(-1074, 1024, 7)] + [10.0**k for k in range(-300, 301, 13)]
        xs += spread(rng, 50, -30, 30, -1.0)
    elif name == "ln1p":
        xs = spread(rng, 1000, -1074, 1023) + spread(rng, 800, -1074, -1, -1.0)
        xs += [-1.0 + math.ldexp(rng.random(), -rng.randint(1, 52)) for _ in range(300)] + cents
        xs += [-1.5, -3.0]
    elif name == "exp":
        xs = [rng.uniform(-746.0, 710.0) for _ in range(2500)] + [rng.uniform(-1.0, 1.0) for _ in range(500)]
        xs += spread(rng, 300, -1074, -1) + spread(rng, 300, -1074, -1, -1.0)
        xs += [709.782712893384, 709.7827128933841, -745.1332191019411, -745.1332191019412, -708.4, 710.0]
        xs += [-746.0, -744.5, -1e6, 1e6]
        xs += [-r / 7.0 for r in range(0, 100)]
    else:
        xs = spread(rng, 1500, -60, 60) + cents + near_one[:300] + spread(rng, 50, -1074, -1000)
        xs += [4.0, 16.0, 0.25, 2.0**100]
    return special + xs


def main():
    rng = random.Random(20261205)
    cases = []
    for name in ("ln", "ln1p", "log2", "log10", "exp", "sqrt"):
        xs = inputs(rng, name)
        with np.errstate(all="ignore"):
            theirs = NUMPY[name](np.array(xs, dtype=np.float64))
        for x, t in zip(xs, theirs):
            if in_domain(name, None, x):
                v = exact(name, None, x)
                lo, hi = enclose(v)
                near = nearest(v, lo, hi)
            else:
                lo = hi = near = float(t)
            cases.append([name, None, bits(x), bits(lo), bits(hi), bits(t), bits(near)])
    for p in (1.5, -0.5, 0.3, 1.0 / 3.0, 2.5, -1.7, 0.1, 7.3, 100.5):
        xs = inputs(rng, "pow")
        with np.errstate(all="ignore"):
            theirs = np.power(np.array(xs, dtype=np.float64), p)
        for x, t in zip(xs, theirs):
            if in_domain("pow", p, x):
                v = exact("pow", p, x)
                lo, hi = enclose(v)
                near = nearest(v, lo, hi)
            else:
                lo = hi = near = float(t)
            cases.append(["pow", bits(p), bits(x), bits(lo), bits(hi), bits(t), bits(near)])
    # Arguments with a low word: x/7, x·0.1, x + 0.1 in double-double.
    dd_cases = []
    for name, p in [("ln", None), ("ln1p", None), ("log2", None), ("log10", None), ("exp", None),
                    ("sqrt", None), ("pow", 1.5), ("pow", -0.3)]:
        for _ in range(400):
            x = mp.mpf(rng.choice([rng.uniform(-700, 700) if name == "exp" else math.ldexp(1 + rng.random(), rng.randint(-60, 60)),
                                   1.0 + math.ldexp(rng.random(), -rng.randint(20, 50))]))
            v = x / 7 if rng.random() < 0.5 else x * mp.mpf("0.1")
            hi = float(v)
            lo = float(v - mp.mpf(hi))
            arg = mp.mpf(hi) + mp.mpf(lo)
            if not in_domain(name, p, hi) or (name != "exp" and arg <= 0):
                continue
            below, above = enclose(exact(name, p, arg))
            dd_cases.append([name, bits(p) if p is not None else None, bits(hi), bits(lo), bits(below), bits(above)])
    with open(sys.argv[1], "w") as f:
        json.dump({"cases": cases, "dd_cases": dd_cases}, f)


if __name__ == "__main__":
    main()
