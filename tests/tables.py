"""Comparing what two runs wrote to the warehouse, table by table."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd


def read_sorted(path, table: str, key: list[str]) -> pd.DataFrame:
    """A warehouse table in key order."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        frame = con.execute(f"select * from {table}").df()
    finally:
        con.close()
    return frame.sort_values(key, kind="stable").reset_index(drop=True)


def assert_same_table(expected: pd.DataFrame, actual: pd.DataFrame, table: str) -> None:
    """Same rows and columns; floats equal up to the order they were summed in (1e-9 relative), timestamps the
    same instants whatever their unit, everything else equal."""
    assert len(expected) == len(actual) > 0, table
    assert list(expected.columns) == list(actual.columns), table
    for column in expected.columns:
        name = f"{table}.{column}"
        if pd.api.types.is_float_dtype(expected[column]):
            np.testing.assert_allclose(actual[column], expected[column], rtol=1e-9, atol=1e-12, err_msg=name)
        elif pd.api.types.is_datetime64_any_dtype(expected[column]):
            pd.testing.assert_series_equal(actual[column].astype("datetime64[us]"),
                                           expected[column].astype("datetime64[us]"), check_names=False, obj=name)
        else:
            pd.testing.assert_series_equal(actual[column], expected[column], check_names=False, check_dtype=False,
                                           obj=name)
