"""``mtctl cost``: the words/day table printed from the cost model and measured results."""

from __future__ import annotations

import json
import os

import pytest

from control_plane.capacity.cost import CostModel
from control_plane.cli import main
from control_plane.commands.cost import parse_volumes
from control_plane.settings import Settings


@pytest.fixture
def results(tmp_path, monkeypatch):
    """A results dir with one CPU figure; no MTB_ setting from the caller's shell leaks in."""
    for name in [n for n in os.environ if n.startswith("MTB_")]:
        monkeypatch.delenv(name)
    (tmp_path / "stack.json").write_text(
        json.dumps({"machine": {"cpu": "Test CPU", "cores": 2}, "stack_words_per_min": 120_000})
    )
    return tmp_path


def test_parse_volumes():
    assert parse_volumes("10000,100k,1M") == [10_000, 100_000, 1_000_000]
    assert parse_volumes(" 2.5k , 1_000 ") == [2_500, 1_000]
    for bad in ("abc", "0", ",", "10,-5", "inf", "1e400", "nan", "-inf"):
        with pytest.raises(Exception, match="words|number"):
            parse_volumes(bad)


def test_json_rows_are_the_models(results, capsys):
    assert main(["cost", "--words-per-day", "10000,100000,1000000", "--cache-hit-rate",
                 "0.3", "--results-dir", str(results), "--json"]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert doc["cache_hit_rate"] == 0.3
    assert doc["kinds"]["cpu"]["words_per_minute"] == 120_000 and doc["kinds"]["cpu"]["measured"]
    assert doc["cpu_candidates"][0]["words_per_minute"] == 120_000
    expected = CostModel.from_settings(Settings(), results).table([10_000, 100_000, 1_000_000], 0.3)
    assert doc["rows"] == [r.as_dict() for r in expected]
    assert [(r["words_per_day"], r["kind"]) for r in doc["rows"]] == [
        (w, k) for w in (10_000, 100_000, 1_000_000) for k in ("cpu", "gpu", "gpu-spot", "prod-gpu")
    ]


def test_table_marks_estimates_and_names_sources(results, capsys, monkeypatch):
    monkeypatch.setenv("MTB_PRICE_CPU_PER_HOUR", "1.00")
    assert main(["cost", "--words-per-day", "1M", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "| cpu | 120,000 | 1.00 | measured | warm minimum" in out
    assert "| gpu | " in out and "**estimate**" in out
    assert "- cpu: stack.json: stack_words_per_min = 120,000" in out
    rows = [line for line in out.splitlines() if line.startswith("| 1,000,000 |")]
    assert [r.split(" | ")[1] for r in rows] == [
        "cpu", "gpu (estimate)", "gpu-spot (estimate)", "prod-gpu (estimate)"
    ]  # fmt: skip
    assert "- prod-gpu: the prod-gpu overlay" in out
    cpu_row = CostModel.from_settings(Settings(price_cpu_per_hour=1.0), results).cost_per_day(
        1_000_000, kind="cpu"
    )
    assert rows[0].split(" | ")[-2] == f"{cpu_row.total_usd:,.2f}"


def test_bad_arguments_exit_2(results, capsys):
    for argv in (["--cache-hit-rate", "1.5"], ["--words-per-day", "lots"]):
        with pytest.raises(SystemExit) as exc:
            main(["cost", *argv])
        assert exc.value.code == 2
    assert main(["cost", "--kinds", "tpu", "--results-dir", str(results)]) == 2
    assert "unknown instance kind 'tpu'" in capsys.readouterr().err
