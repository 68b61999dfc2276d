"""bot/core and storage stay free of platform, scheduler and ML libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("slack_bolt", "slack_sdk", "discord", "apscheduler", "transformers", "torch", "trl", "peft",
             "datasets", "aiohttp", "bot.adapters", "scheduler")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_and_storage_sources_import_nothing_forbidden():
    offenders = []
    for folder in ("bot/core", "storage"):
        for path in (ROOT / folder).rglob("*.py"):
            for name in _imports(path):
                if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_importing_the_core_loads_no_forbidden_module():
    code = (
        "import sys, bot.core.service, bot.core.stats, bot.core.importer, storage.queries, storage.db;"
        f"forbidden = {FORBIDDEN!r};"
        "print(','.join(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in forbidden)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == ""
