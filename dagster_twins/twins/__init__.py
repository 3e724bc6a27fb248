"""Living twins: per-user beliefs as conjugate posteriors, with population priors and forgetting.

Pure numpy/pandas; no Dagster here (the assets in ``assets.py`` read, call and write).
"""
