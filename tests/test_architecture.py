"""The architecture is enforced by the test suite: the import-linter contracts of
pyproject.toml (layers; no Qt below the GUI) hold, and no two modules import each other,
directly or through others (lazy imports inside functions count too; an import only for type
annotations, under `if TYPE_CHECKING:`, runs never and is not a cycle)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    found = str(exe) if exe.is_file() else shutil.which("lint-imports")
    assert found, "lint-imports not found: install the test extra (pip install -e '.[test]')"
    return found


def test_import_linter_contracts_are_kept():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}  # this checkout's astroapp
    proc = subprocess.run([_lint_imports(), "--no-cache", "--no-logo"],  # pyproject.toml's
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout and "layers" in proc.stdout


def import_cycles(package: str) -> list[list[str]]:
    """One shortest cycle through each direct import that closes one: [a, b, ..., a]."""
    graph = grimp.build_graph(package, cache_dir=None, exclude_type_checking_imports=True)
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is None:
                continue
            cycle = [importer, *back]
            if frozenset(cycle) not in seen:
                seen.add(frozenset(cycle))
                cycles.append(cycle)
    return cycles


def test_no_module_imports_itself_through_others():
    cycles = import_cycles("astroapp")
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_cycle_finder_reports_a_real_cycle(tmp_path, monkeypatch):
    """The check above is not vacuous: a package whose modules import each other lazily
    (as a registry importing its implementations would) is reported; a back-reference for
    type annotations only is not."""
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text("def make():\n    from cyclepkg.impl import Impl\n    return Impl()\n")
    (pkg / "impl.py").write_text("from cyclepkg.base import make\n\nclass Impl:\n    pass\n")
    (pkg / "leaf.py").write_text("import cyclepkg.base\nimport cyclepkg.typed\n")
    (pkg / "typed.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
                                  "    from cyclepkg.leaf import x\n")  # annotations only
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclepkg") == [["cyclepkg.base", "cyclepkg.impl", "cyclepkg.base"]]
