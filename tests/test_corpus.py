"""The adversarial corpus through the real pipeline: nothing lost, nothing bent.

``tests/adversarial.py`` writes well over a hundred cases (files, symlinks, folders; several hundred rows) from
csv-spectrum, JSONTestSuite, the Big List of Naughty Strings, Airbyte's CSV scenarios and issue 21 into one landing
folder; the Dagster job (ingestion, dbt, twins) runs over them once. Then, for every case: each row is loaded
exactly as meant, or quarantined with a reason, or its file refused with a message naming file and line, or the
entry skipped with a word in the load log. And for the whole warehouse: counts reconcile (rows in = loaded +
duplicate + quarantined), the marts and twins hold no non-finite number, no time outside the plausible range and no
id outside the allowed forms, and a purchase's value in the marts equals raw to the cent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from tests import adversarial
from tests.adversarial import D0, D2
from tests.conftest import make_settings
from tests.test_faults import BASE_LAYERS, failure_text, reconcile, rows, run

CASES = adversarial.cases()
LATEST = datetime.combine(D2, datetime.min.time()) + timedelta(days=2)  # the window's last landing day + 1, ended


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    settings = make_settings(tmp_path_factory.mktemp("corpus"))
    adversarial.build(settings.landing_dir)
    result = run(settings, D0, D2, layers=(*BASE_LAYERS, "twins"), expect_success=False)
    return settings, result


def latest_log(settings, source: str, path: Path) -> tuple:
    found = rows(settings, "select status, message, rows_read, rows_loaded, rows_duplicate, rows_quarantined "
                           "from raw.load_log where source = ? and source_file = ? order by loaded_at desc, rowid desc "
                           "limit 1", [source, str(path)])
    assert found, f"{path} is not in the load log"
    return found[0]


def test_the_run_goes_on_and_only_the_accounting_warns(corpus):
    settings, result = corpus
    assert result.success, failure_text(result)
    failed = {(c.asset_key.to_user_string(), c.check_name, c.severity) for c in result.get_asset_check_evaluations()
              if not c.passed}
    assert failed == {("raw/events", "every_file_accounted", dg.AssetCheckSeverity.WARN),
                      ("raw/quarantine", "every_file_accounted", dg.AssetCheckSeverity.WARN)}
    assert rows(settings, "select count(*) from twins.user_twins")[0][0] > 0


def test_every_landing_day_found_is_a_real_one(corpus):
    """One far-future row, or a path dated 2999, cannot spread a run over centuries."""
    from dagster_twins.pipeline import landing_span

    settings, _ = corpus
    assert landing_span(settings) == (D0, D2)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.family}: {c.name}" for c in CASES])
def test_case(corpus, case: adversarial.Case):
    settings, _ = corpus
    path = settings.landing_dir / case.path
    status, message, *counts = latest_log(settings, case.source, path)
    assert (status or "loaded") == case.status, message
    if case.counts is not None:
        assert tuple(counts) == case.counts, message
    if case.message is not None:
        assert case.message in (message or ""), message
    if case.status == "refused":
        assert str(path) in message
    if case.status == "skipped":
        assert counts == [0, 0, 0, 0]
        return
    found = {(line or 0): reason for line, reason in rows(
        settings, "select source_line, reason from raw.quarantine where source = ? and source_file = ?",
        [case.source, str(path)])}
    assert set(found) == set(case.quarantined), found
    for line, piece in case.quarantined.items():
        assert piece in found[line], (line, found[line])
    for key, columns in case.loaded.items():
        names = ", ".join(f'"{c}"' for c in columns) or "1"
        loaded = rows(settings, f"select {names} from raw.{case.source} where _row_id = ? and _source_file = ?",
                      [key, str(path)])
        assert len(loaded) == 1, f"{key} not loaded from {path}"
        for (column, expected), actual in zip(columns.items(), loaded[0], strict=False):
            assert actual == expected and type(actual) is type(expected), (key, column, actual, expected)


def test_counts_reconcile_for_every_file(corpus):
    settings, _ = corpus
    files = reconcile(settings)
    assert sum(s[0] for s in files.values()) > 300
    for case in CASES:
        if case.status != "skipped" and case.counts is not None:
            assert files[(case.source, Path(case.path).name)] == case.counts, case.name


def test_a_changed_resend_is_recorded_with_both_versions(corpus):
    settings, _ = corpus
    conflicts = rows(settings, "select row_id, differing_columns, record, kept_record, landing_date, kept_landing_date "
                               "from raw.conflicts where source = 'events'")
    assert [(c[0], c[1], c[4], c[5]) for c in conflicts] == [("resend-0", "value", adversarial.D1, D0)]
    assert "12.00" in conflicts[0][2] and "10.00" in conflicts[0][3]
    assert rows(settings, "select value from raw.events where _row_id = 'resend-0'") == [(Decimal("10.00"),)]


def test_marts_and_twins_hold_only_finite_numbers_plausible_times_and_valid_ids(corpus):
    settings, _ = corpus
    columns = rows(settings, "select table_schema, table_name, column_name, data_type from information_schema.columns "
                             "where table_schema in ('marts', 'twins')")
    checked = {"numbers": 0, "times": 0, "ids": 0}
    for schema, table, column, type_ in columns:
        name = f'{schema}.{table}."{column}"'
        if type_.startswith(("DOUBLE", "FLOAT", "DECIMAL", "REAL")):
            bad = rows(settings, f'select count(*) from {schema}.{table} '
                                 f'where not isfinite(cast("{column}" as double))')
            assert bad == [(0,)], name
            checked["numbers"] += 1
        elif type_.startswith(("TIMESTAMP", "DATE")) and column not in ("computed_at", "updated_at", "fitted_at"):
            low, high = rows(settings, f'select min("{column}"), max("{column}") from {schema}.{table}')[0]
            if low is not None:
                low, high = (v if isinstance(v, datetime) else datetime.combine(v, datetime.min.time())
                             for v in (low, high))
                assert datetime(1970, 1, 1) <= low and high <= LATEST, (name, low, high)
            checked["times"] += 1
        elif column == "user_id":
            bad = rows(settings, f"select user_id from {schema}.{table} where user_id is null "
                                 r"or regexp_matches(user_id, '[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]') "
                                 r"or nfc_normalize(user_id) <> user_id or regexp_matches(user_id, '^[\p{Z}\s]*$') "
                                 "or regexp_matches(user_id, '^[\\[{]') or list_contains(?, lower(user_id)) limit 5",
                       [list(adversarial.DEFAULT_NULL_VALUES)])
            assert bad == [], (name, bad)
            checked["ids"] += 1
    assert min(checked.values()) > 3, checked
    # The ids that must have become one user did, and the twins were built for them.
    assert rows(settings, "select count(*) from twins.user_twins where user_id = 'jos\u00e9'") == [(1,)]
    assert rows(settings, "select count(*) from marts.dim_users where user_id in ('42', 'user-7', 'u-lf')") == [(3,)]


def test_a_purchase_in_the_marts_equals_raw_to_the_cent(corpus):
    settings, _ = corpus
    pairs = rows(settings, "select r.value, f.value, f.spend from raw.events r join marts.fct_events f "
                           "on f.interaction_id = 'events:' || r._row_id where r.event_type = 'purchase' "
                           "and r.value is not null")
    assert len(pairs) >= 8
    for raw_value, mart_value, spend in pairs:
        assert isinstance(mart_value, Decimal) and raw_value == mart_value == spend, (raw_value, mart_value, spend)
    assert rows(settings, "select spend from marts.fct_events where interaction_id = 'events:numbers-6'") == [
        (Decimal("65.34"),)]
    total = rows(settings, "select sum(spend) from marts.user_daily_features where user_id = 'u-money'")[0][0]
    assert total == Decimal("65.34") + Decimal("1.00") + Decimal("1.50") + Decimal("9999999999999999.99")
