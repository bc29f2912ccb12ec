"""The codebase's own rules, checked: ruff's rule set, the layer rule (import-linter), no import
cycles, the registries load their built-in modules themselves, metric and tag names in one place,
no model named outside its registry entry, no probing of models, the doctests, and no pointer to a
file the repository does not have."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import keys

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "harness"
TOOLS = Path(sys.executable).parent


def _tool(name: str) -> str:
    exe = shutil.which(name, path=str(TOOLS)) or shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return exe


def _sources() -> list[Path]:
    return sorted(HARNESS.rglob("*.py"))


def _strings(tree: ast.AST) -> list[ast.Constant]:
    """Every string constant of a module but its docstrings (f-string pieces included)."""
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ── layers and cycles ─────────────────────────────────────────────────────────────────
def test_the_layer_rule_holds():
    """The import-linter contracts in pyproject.toml (one per layer boundary, inside
    harness.flows, and one that forbids every import cycle)."""
    proc = subprocess.run(
        [_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and re.search(r"\d+ kept, 0 broken", proc.stdout)


def test_ruff_is_clean():
    """``ruff check`` with the rule set of pyproject.toml's ``[tool.ruff.lint]`` passes on the
    code, the benchmarks, the tests and the scripts."""
    proc = subprocess.run(
        [_tool("ruff"), "check", "harness", "benchmarks", "tests", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_no_import_cycles():
    """No two modules of harness import each other, directly or through others, counting
    imports inside functions and under ``if TYPE_CHECKING:`` (a registry imports its built-in
    modules by name instead)."""
    grimp = pytest.importorskip("grimp")  # import-linter's own graph library
    graph = grimp.build_graph("harness", exclude_type_checking_imports=False)
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for m in sorted(adj):
        if m not in index:
            visit(m)
    assert not cycles, f"modules that import each other: {cycles}"


def test_the_registries_import_their_built_in_modules_on_first_use():
    """Importing harness.flows / harness.data imports no architecture family and no loader;
    the first names() does."""
    code = (
        "import sys\n"
        "from harness import data, flows\n"
        "early = [m for m in sys.modules if m.startswith('harness.flows.families.')\n"
        "         or m in ('harness.data.toy', 'harness.data.tabular', 'harness.data.images',\n"
        "                  'harness.data.variational')]\n"
        "assert not early, early\n"
        "assert 'realnvp' in flows.names() and 'moons' in data.names()\n"
        "assert 'variational' in data.schemes()\n"
        "assert 'harness.flows.families.realnvp' in sys.modules\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    return env


# ── names in one place ────────────────────────────────────────────────────────────────
METRIC_OR_TAG = re.compile(r"^(eval|train|perf|stab|val|system|tune)/|^nfbench\.")
NOT_A_RUN_NAME = {  # (file, literal): names that are neither metrics nor tags
    ("harness/flows/zoo.py", "nfbench.flows"),  # the entry-point group of flow plug-ins
}


def test_every_metric_and_tag_name_is_spelled_only_in_keys():
    """A string constant that is (or starts) a metric or tag name is a bug anywhere but
    harness/keys.py: prefixes too (``keys.PERF_PREFIX``), f-strings built from keys pass."""
    found = []
    for path in _sources():
        if path == HARNESS / "keys.py":
            continue
        for node in _strings(ast.parse(path.read_text(), str(path))):
            if METRIC_OR_TAG.match(node.value) and (_rel(path), node.value) not in NOT_A_RUN_NAME:
                found.append(f"{_rel(path)}:{node.lineno}: {node.value!r}")
    assert not found, "metric or tag names written out of keys.py:\n" + "\n".join(found)


def test_the_name_scan_finds_a_literal(tmp_path):
    """The scan above fails on what it should (so that it cannot pass by finding nothing)."""
    tree = ast.parse(
        '"""eval/nll in a docstring"""\nx = {"perf/density_ms": 1}\n'
        'y = f"nfbench.live.{k}"\nz = f"{keys.PERF_PREFIX}{k}"\n'
    )
    hits = sorted(n.value for n in _strings(tree) if METRIC_OR_TAG.match(n.value))
    assert hits == ["nfbench.live.", "perf/density_ms"]
    assert keys.PERF_DENSITY_MS == "perf/density_ms"


# The reference models are registry entries; only their own modules name them. Elsewhere the
# same words mean something else, listed here with the reason.
MODEL_NAMES = {"histogram", "gaussian"}
OWN_MODULES = {"harness/flows/families/histogram.py", "harness/flows/families/gaussian.py"}
OTHER_MEANINGS = {
    ("harness/flows/continuous/trace.py", "gaussian"),  # the Hutchinson probe's distribution
    ("harness/report/published.py", "gaussian"),  # the papers' "Gaussian" row → our arch name
}


def test_no_reference_model_is_named_outside_its_registry_entry():
    found = []
    for path in _sources():
        rel = _rel(path)
        if rel in OWN_MODULES:
            continue
        for node in _strings(ast.parse(path.read_text(), str(path))):
            if node.value in MODEL_NAMES and (rel, node.value) not in OTHER_MEANINGS:
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert not found, (
        "a reference model named outside its registry entry (read the entry's "
        "metadata instead):\n" + "\n".join(found)
    )


MODEL_VARIABLES = {
    "flow",
    "model",
    "deq",
    "dequantizer",
    "layer",
    "net",
    "module",
    "ds",
    "dataset",
    "view",
}


def test_no_probing_of_models_outside_flows():
    """``getattr``/``hasattr`` on a model, dequantizer or data set only inside harness/flows
    (the flow contract gives every model what the rest of the code reads)."""
    found = []
    for path in _sources():
        rel = _rel(path)
        if rel.startswith("harness/flows/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id in MODEL_VARIABLES
            ):
                found.append(f"{rel}:{node.lineno}: {node.func.id}({node.args[0].id}, …)")
    assert not found, "attribute probing of models:\n" + "\n".join(found)


# ── docs ──────────────────────────────────────────────────────────────────────────────
def test_the_doctests_run():
    """The examples in docstrings, as ``pytest --doctest-modules harness`` runs them."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--doctest-modules",
            "harness",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) >= 10, proc.stdout[-2000:]


MISSING_FILES = re.compile(
    r"DESIGN\.md|REFERENCE\.md|FIELD-NOTES\.md|STYLE\.md|\.\./shared|\bissues? #?\d+"
)


def test_no_pointer_to_a_file_or_issue_outside_the_repository():
    """The repository stands alone: no code, test, doc or script points to notes it does not
    have, or to an issue number."""
    paths = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for folder in ("harness", "tests", "benchmarks", "docs", "scripts", "suites"):
        paths += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.suffix in (".py", ".md", ".sh", ".yaml", ".toml", ".txt")
        ]
    hits = []
    for path in sorted(set(paths)):
        if path == Path(__file__).resolve():
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if MISSING_FILES.search(line):
                hits.append(f"{_rel(path)}:{i}: {line.strip()[:100]}")
    assert not hits, "\n".join(hits)
