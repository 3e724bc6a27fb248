"""Churn as survival: covariates, lifelines fits, vectorized conditional scoring and validation metrics.

Plain pandas/numpy/lifelines; no Dagster here.
"""
