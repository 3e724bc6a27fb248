"""Churn and return as of a day: landmark frames, lifelines Cox fits, backtests and scoring as plain functions
(no Dagster), ``daily.py`` for one day's run, ``store.py`` for the layer's tables (what other layers may read)
and ``assets.py`` around them.
"""
