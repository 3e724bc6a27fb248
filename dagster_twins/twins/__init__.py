"""Living twins: per-user beliefs as conjugate posteriors, with population priors and forgetting.

The math is pure numpy/pandas with no Dagster (families, priors, state, summarize); ``update.py`` holds a run's
steps and the one writer of the twins' tables; ``assets.py`` and ``parallel.py`` read, call, write and report.
"""
