"""Each section of a suite's page is one module of harness/report/sections/, registered once in
``SECTIONS``: every module there (but the shared ``base``) is listed exactly once, each entry
is its own module with its anchor, title and ``build``, anchors are unique, no section imports
another, and a page holds exactly the listed sections, in the listed order."""

from __future__ import annotations

import ast
import pkgutil
import re
from pathlib import Path

import pandas as pd

from harness import keys
from harness.report import sections
from harness.report.page import Section
from harness.report.sections import SECTIONS, Context, compiled, suite_sections, tuning
from harness.report.table import prepare
from harness.tracking.read import load_runs

SHARED = {"base"}  # the one module of the package that is not a section
PACKAGE = Path(sections.__file__).parent
SECTION_TAG = re.compile(r'<section id="([^"]+)"><h2>([^<]*)</h2>')


def _names(modules) -> list[str]:
    return [m.__name__.removeprefix(f"{sections.__name__}.") for m in modules]


def test_every_section_module_is_listed_exactly_once():
    on_disk = {m.name for m in pkgutil.iter_modules([str(PACKAGE)])}
    listed = _names(SECTIONS)
    assert len(listed) == len(set(listed)), listed
    assert sorted(listed) == sorted(on_disk - SHARED)


def test_every_entry_is_a_section_defined_in_its_own_module():
    for module in SECTIONS:
        assert module.__name__.startswith(f"{sections.__name__}."), module
        assert Path(module.__file__).parent == PACKAGE and Path(module.__file__).stem in (
            _names([module]))
        assert module.build.__module__ == module.__name__, module  # not borrowed
        assert isinstance(module.ANCHOR, str) and module.ANCHOR, module
        assert isinstance(module.TITLE, str) and module.TITLE, module
        assert {"ANCHOR", "TITLE", "build"} <= set(module.__all__), module


def test_anchors_and_titles_are_unique():
    anchors = [m.ANCHOR for m in SECTIONS]
    titles = [m.TITLE for m in SECTIONS]
    assert len(set(anchors)) == len(anchors), anchors
    assert len(set(titles)) == len(titles), titles


def test_no_section_imports_another():
    """A section imports only base and modules of harness.report outside the package (what
    two sections share lives there); imports inside functions count too."""
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem in SHARED | {"__init__"}:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            absolute = node.module or ""
            if node.level == 1:  # from .x import …, from . import x
                targets = [absolute] if absolute else [a.name for a in node.names]
            elif node.level == 0 and absolute.startswith(f"{sections.__name__}."):
                targets = [absolute.removeprefix(f"{sections.__name__}.").split(".")[0]]
            elif node.level == 0 and absolute == sections.__name__:
                targets = [a.name for a in node.names]
            else:
                continue
            found += [f"{path.name}:{node.lineno}: {t}" for t in targets if t not in SHARED]
    assert not found, "a section imports another section:\n" + "\n".join(found)


def _page_sections(index: Path) -> list[tuple[str, str]]:
    return SECTION_TAG.findall(index.read_text())


def _expected(*absent) -> list[tuple[str, str]]:
    return [(m.ANCHOR, m.TITLE) for m in SECTIONS if m not in absent]


def test_a_suite_page_has_exactly_the_listed_sections_in_order(zoo_site: Path):
    """The zoo suite has no studies and no compiled runs: every other section, in order, and
    the table of contents names them in the same order."""
    assert _page_sections(zoo_site) == _expected(tuning, compiled)
    toc = re.search(r'<nav class="toc">(.*?)</nav>', zoo_site.read_text()).group(1)
    assert re.findall(r'<a href="#([^"]+)">', toc) == [m.ANCHOR for m in SECTIONS
                                                      if m not in (tuning, compiled)]


def test_the_compile_section_takes_its_listed_place(compiled_site: Path):
    assert _page_sections(compiled_site) == _expected(tuning)


def _tuning_runs() -> pd.DataFrame:
    """One study of one trial, with the columns :func:`tracking.read.load_runs` gives."""
    tags = {keys.TAG_ARCH: "realnvp", keys.TAG_ARCH_LABEL: "realnvp",
            keys.TAG_DATASET: "moons", keys.TAG_DEQUANT: "none", keys.TAG_STUDY: "s" * 16,
            keys.TAG_STATUS: keys.STATUS_FINISHED}
    study = {**tags, keys.TAG_KIND: keys.KIND_STUDY, "run_id": "a" * 32, "tune.objective": "nll",
             keys.TUNE_TRIALS: 1.0, keys.TUNE_BEST: 1.5, keys.TUNE_CPU_HOURS: 0.1,
             "url": "http://127.0.0.1:5000/#/experiments/1/runs/" + "a" * 32}
    trial = {**tags, keys.TAG_KIND: keys.KIND_TRIAL, "run_id": "b" * 32,
             keys.TAG_TRIAL_NUMBER: "0", keys.TUNE_BEST: 1.5, keys.TUNE_STEPS: 100.0,
             keys.TUNE_CPU_HOURS: 0.1, keys.TAG_STOPPED_BY: "steps", "end_time": 1,
             "url": "http://127.0.0.1:5000/#/experiments/1/runs/" + "b" * 32}
    return pd.DataFrame([study, trial])


def test_with_every_section_present_the_order_is_the_listed_one(store):
    """The compiled suite's runs with a study: every section has a place, in order."""
    runs = prepare(load_runs(store.uri, ["compiled"]))
    built = suite_sections(Context(runs, tuning=_tuning_runs()))
    assert all(isinstance(s, Section) for s in built)
    assert [(s.anchor, s.title) for s in built] == _expected()
