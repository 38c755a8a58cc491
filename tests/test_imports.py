"""The import graph of hyperproj: no cycles anywhere, and the codec's steps layered one way.

Every ``import`` counts, the ones inside functions too (a lazy import that closes a cycle still
ties the two modules together); imports under ``if TYPE_CHECKING:`` do not run and do not count.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hyperproj

ROOT = Path(hyperproj.__file__).parent

# The codec's modules in pipeline order: each may import only modules listed before it.
CODEC_ORDER = [
    "entropy", "_arm_coding", "quant", "format", "signals", "hypermodel", "rate", "train", "job", "batch",
    "families.registry", "families.doh", "families._grid_file", "families.grid", "families", "_auto", "cropfile", "rendering",
    "pipeline",
    "inputs", "collection", "",
]
MAX_CODEC_LINES = 420


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the hyperproj modules it imports (``from pkg import name`` counts as ``pkg.name``
    when that is a module, else as ``pkg``)."""
    mods = _modules()

    def known(name: str) -> str:
        while name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text())
        skip = {id(n) for node in ast.walk(tree)
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                graph[mod] |= {known(a.name) for a in node.names if a.name.split(".")[0] == "hyperproj"}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != "hyperproj":
                    continue
                for a in node.names:
                    graph[mod].add(known(f"{target}.{a.name}") if f"{target}.{a.name}" in mods else known(target))
        graph[mod].discard(mod)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_detector_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_hyperproj():
    graph = import_graph()
    assert "hyperproj.codec.pipeline" in graph["hyperproj.codec"]  # the graph sees package imports
    assert cycles(graph) == []


def test_codec_modules_import_only_earlier_steps():
    graph = import_graph()
    order = [f"hyperproj.codec.{m}".rstrip(".") for m in CODEC_ORDER]
    codec_modules = {m for m in graph if m.startswith("hyperproj.codec.") or m == "hyperproj.codec"}
    assert codec_modules - set(order) == {"hyperproj.codec.baselines"}  # beside the pipeline
    assert not any(m.startswith("hyperproj.codec") for m in graph["hyperproj.codec.baselines"])
    backwards = [(m, dep) for i, m in enumerate(order) for dep in graph[m]
                 if dep in order and order.index(dep) >= i]
    assert backwards == []


def test_codec_modules_stay_small():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in (ROOT / "codec").rglob("*.py")}
    assert {k: v for k, v in sizes.items() if v > MAX_CODEC_LINES} == {}


def test_import_codec_alone():
    for module in ("hyperproj.codec", "hyperproj.codec.format", "hyperproj.cli"):
        done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
