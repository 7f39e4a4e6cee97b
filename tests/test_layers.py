"""The layers README.md's Layout draws, held: each package of bench/ imports only the layers
below it (read from the source with ast, so a new upward import fails here, not in review)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
FLOOR = {"spec", "data", "reference", "analytic", "defaults", "registry", "measure", "envinfo", "nvml", "faults"}
# layer -> the layers it may import (besides itself); the ground floor imports only the floor.
ALLOWED = {
    "floor": {"floor"},
    "records": {"floor"},
    "workers": {"records", "floor"},
    "worker": {"workers", "records", "floor"},
    "decide": {"records", "floor"},
    "show": {"decide", "records", "floor"},
    "runner": {"workers", "records", "floor"},
    "counts": {"runner", "workers", "records", "floor"},
    "overhead": {"worker", "workers", "decide", "records", "floor"},
    "commands": {"*"},
    "cli": {"*"},
}
PACKAGES = {"records", "workers", "runner", "decide", "show", "counts", "commands"}


def layer(module: str) -> str:
    parts = module.split(".")[1:]  # without "bench"
    if not parts:
        return "bench"
    if parts[0] in PACKAGES:
        return parts[0]
    if parts[0] in FLOOR:
        return "floor"
    return parts[0]  # worker, overhead, cli, __main__


def imports(path: Path, root: Path = ROOT) -> list[str]:
    rel = path.relative_to(root).with_suffix("").parts
    pkg = list(rel[:-1]) if rel[-1] != "__init__" else list(rel[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == "bench" or (base.startswith("bench.") and base.count(".") == 1 and base[6:] in PACKAGES):
                out += [f"{base}.{n.name}" for n in node.names]
            elif base.startswith("bench"):
                out.append(base)
        elif isinstance(node, ast.Import):
            out += [n.name for n in node.names if n.name.startswith("bench")]
    return out


def test_every_import_inside_bench_points_down_the_layers():
    wrong = []
    for path in sorted(BENCH.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("").parts
        here = layer(".".join(rel if rel[-1] != "__init__" else rel[:-1]))
        if here in ("bench", "__main__"):
            continue
        allowed = ALLOWED[here]
        for target in imports(path):
            there = layer(target)
            if there != here and "*" not in allowed and there not in allowed:
                wrong.append(f"{path.relative_to(ROOT)} ({here}) imports {target} ({there})")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The test above can fail: a records module importing the runner is caught, in both spellings."""
    fake = tmp_path / "bench" / "records" / "probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..runner import schedule\nfrom bench import plot\nfrom .. import spec\n")
    found = imports(fake, tmp_path)
    assert found == ["bench.runner.schedule", "bench.plot", "bench.spec"]
    assert [layer(f) for f in found] == ["runner", "plot", "floor"]
    assert "runner" not in ALLOWED["records"]
