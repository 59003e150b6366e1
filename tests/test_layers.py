"""The one direction of imports (../shared/DESIGN.md), enforced by walking the AST."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What each layer must never import (ours above it, or anything non-deterministic for the runtime).
FORBIDDEN = {
    "runtime": {"asyncio", "time", "random", "threading", "socket", "torch", "aiohttp", "libp2p", "trio",
                "storage", "consensus", "node", "rpc", "secrets", "datetime"},
    "storage": {"consensus", "node", "rpc", "torch"},
    "consensus": {"node", "rpc"},
    "node": {"torch"},
    "rpc": {"storage", "consensus", "torch"},
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations(package: str) -> list[str]:
    banned = FORBIDDEN[package]
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, module in imported_modules(path)
        if module.split(".")[0] in banned
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_point_only_down(package):
    assert violations(package) == []


def test_the_checker_sees_a_forbidden_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import time\nfrom storage.schema import META\n")
    assert [m for _, m in imported_modules(sample)] == ["time", "storage.schema"]


def test_no_test_module_imports_another():
    """What two test modules share lives in tests/helpers/: a test module imported by another would run
    its tests' import-time setup there, and ties the two files' edits together."""
    found = [f"{path.relative_to(ROOT)}:{line} imports {module}"
             for path in sorted((ROOT / "tests").rglob("*.py"))
             for line, module in imported_modules(path)
             if module.split(".")[-1].startswith("test_") or module.startswith("tests.test_")]
    assert found == []
