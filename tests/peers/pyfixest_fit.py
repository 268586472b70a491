"""Reference fits with absorbed fixed effects from pyfixest, for gramfit's
differential tests.

Usage: python3 pyfixest_fit.py SPEC.json OUT.json

SPEC is a list of jobs:
  {"name": ..., "data": CSV, "formula": "y ~ x | fe", "vcov": "iid" |
   "hetero" | {"CRV1": "col"}, "weights": COL or null, "predict": bool}
The output maps each name to the slopes' names, coefficients, standard
errors, t values, p values, the row count and the R² (overall and within).
The fixed effects are demeaned to 1e-12 (pyfixest's default tolerance is
1e-8; 1e-14 fails to converge on a 0/1 column of the listings), so that
the reference is exact to the digits compared; a job may set "fixef_tol".
"""
import json
import sys
import warnings

import numpy as np
import pandas as pd
import pyfixest as pf


def num(x):
    x = float(x)
    return x if np.isfinite(x) else None


def fit(job):
    df = pd.read_csv(job["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = pf.feols(
            job["formula"],
            data=df,
            vcov=job["vcov"],
            weights=job.get("weights"),
            fixef_tol=job.get("fixef_tol", 1e-12),
        )
    out = {}
    if job.get("predict"):
        res.fixef(atol=1e-14, btol=1e-14)
        out["predict"] = [num(v) if np.isfinite(v) else None for v in res.predict(newdata=df)]
    return out | {
        "names": list(res.coef().index),
        "params": [num(v) for v in res.coef()],
        "bse": [num(v) for v in res.se()],
        "tvalues": [num(v) for v in res.tstat()],
        "pvalues": [num(v) for v in res.pvalue()],
        "nobs": int(res._N),
        "rsquared": num(res._r2),
        "rsquared_within": num(res._r2_within),
    }


def main():
    jobs = json.load(open(sys.argv[1]))
    out = {job["name"]: fit(job) for job in jobs}
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
