"""Reference fits from statsmodels and design matrices from patsy, for
gramfit's differential tests.

Usage: python3 statsmodels_fit.py SPEC.json OUT.json

SPEC is a list of jobs:
  {"name": ..., "kind": "fit", "data": CSV, "formula": F,
   "weights": EXPR or null, "method": "pinv"}
  {"name": ..., "kind": "design", "data": CSV, "formula": F}
  {"name": ..., "kind": "predict", "data": CSV, "new": CSV, "formula": F,
   "weights": EXPR or null, "cov_type": null or "HC3", "alpha": A}
Either may carry "read_csv": {keyword arguments of pandas.read_csv}.
The output maps each name to statsmodels' attributes (fit) or to patsy's
column names, values and row count (design).
"""
import json
import sys

import numpy as np
import pandas as pd
import patsy
import statsmodels.formula.api as smf


def num(x):
    x = float(x)
    return x if np.isfinite(x) else None


def read(job):
    # Extra read_csv arguments (sep, decimal, na_values, keep_default_na).
    return pd.read_csv(job["data"], **job.get("read_csv", {}))


def fit(job):
    df = read(job)
    kw = {}
    if job.get("cov_type"):
        kw["cov_type"] = job["cov_type"]
        if job["cov_type"] == "cluster":
            # Rows patsy drops are not in this model; the data here have none.
            kw["cov_kwds"] = {"groups": pd.factorize(df[job["cluster"]])[0]}
    if job.get("weights"):
        w = df.eval(job["weights"])
        res = smf.wls(job["formula"], df, weights=w).fit(**kw)
    else:
        res = smf.ols(job["formula"], df).fit(**kw)
    names = list(res.params.index)
    ci = res.conf_int(job.get("alpha", 0.05))
    out = {
        "names": names,
        "params": [num(v) for v in res.params],
        "bse": [num(v) for v in res.bse],
        "tvalues": [num(v) for v in res.tvalues],
        "pvalues": [num(v) for v in res.pvalues],
        "conf_int": [[num(a), num(b)] for a, b in ci.values],
        "cov_params": [[num(v) for v in row] for row in res.cov_params().values],
        "eigenvals": [num(v) for v in res.eigenvals],
        "condition_number": num(res.condition_number),
    }
    from statsmodels.stats.stattools import durbin_watson, jarque_bera, omni_normtest
    jb, jbpv, skew, kurt = jarque_bera(res.wresid)
    omni, omnipv = omni_normtest(res.wresid)
    for k, v in [("omnibus", omni), ("prob_omnibus", omnipv), ("skew", skew), ("kurtosis", kurt),
                 ("jarque_bera", jb), ("prob_jb", jbpv), ("durbin_watson", durbin_watson(res.wresid))]:
        out[k] = num(v)
    out["rank"] = int(res.model.rank)
    out["k_constant"] = int(res.model.k_constant)
    for k in ["nobs", "df_model", "df_resid", "ssr", "ess", "centered_tss",
              "uncentered_tss", "scale", "mse_model", "mse_resid", "mse_total", "rsquared",
              "rsquared_adj", "fvalue", "f_pvalue", "llf", "aic", "bic"]:
        out[k] = num(getattr(res, k))
    return out


def predict(job):
    """Fit on job["data"], then statsmodels' get_prediction on job["new"]."""
    df = read(job)
    new = pd.read_csv(job["new"])
    kw = {"cov_type": job["cov_type"]} if job.get("cov_type") else {}
    if job.get("weights"):
        res = smf.wls(job["formula"], df, weights=df.eval(job["weights"])).fit(**kw)
        pred = res.get_prediction(new, weights=new.eval(job["weights"]))
    else:
        res = smf.ols(job["formula"], df).fit(**kw)
        pred = res.get_prediction(new)
    frame = pred.summary_frame(alpha=job.get("alpha", 0.05))
    return {c: [num(v) for v in frame[c]] for c in frame.columns}


def design(job):
    df = read(job)
    y, X = patsy.dmatrices(job["formula"], df, return_type="dataframe")
    return {
        "y_names": list(y.columns),
        "names": list(X.columns),
        "rows": int(X.shape[0]),
        "dropped": int(df.shape[0] - X.shape[0]),
        "y": [num(v) for v in y.values[:, 0]],
        "X": [[num(v) for v in row] for row in X.values],
    }


def main():
    jobs = json.load(open(sys.argv[1]))
    out = {}
    for job in jobs:
        try:
            out[job["name"]] = {"fit": fit, "design": design, "predict": predict}[job["kind"]](job)
        except Exception as e:  # report, do not hide
            out[job["name"]] = {"error": f"{type(e).__name__}: {e}"}
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
