"""megatron.core is imported in one thin layer only: megatron_kanana/mcore/."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ALLOWED = REPO / "megatron_kanana" / "mcore"
SCANNED = ["megatron_kanana", "kernels", "tools", "examples", "benchmarks"]


def _imports_megatron_core(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        if any(n == "megatron.core" or n.startswith("megatron.core.") for n in names):
            lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "megatron" and any(a.name == "core" for a in node.names):
            lines.append(node.lineno)
    return lines


def test_only_mcore_imports_megatron_core():
    offenders = []
    for top in SCANNED:
        for path in (REPO / top).rglob("*.py"):
            if ALLOWED in path.parents:
                continue
            offenders += [f"{path.relative_to(REPO)}:{line}" for line in _imports_megatron_core(path)]
    assert not offenders, f"megatron.core imported outside megatron_kanana/mcore/: {offenders}"


def test_the_scan_finds_an_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from megatron.core import parallel_state\nimport megatron.core.tensor_parallel\n")
    assert _imports_megatron_core(bad) == [1, 2]
