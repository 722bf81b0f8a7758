"""The package's shape: one folder per concern, dependencies pointing one way (import-linter's contracts in
pyproject.toml), and modules and functions a reader can hold in mind."""
from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import azr

PACKAGE = Path(azr.__file__).parent
PUBLIC_FACE = {"__init__.py", "__main__.py", "errors.py", "services.py"}
CONCERNS = {"config", "utils", "data", "models", "rl", "checkpoints", "hub", "training", "app", "cli"}
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_TRAINER_LINES = 350, 80, 250


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_import_contracts_hold():
    """Layers (front-ends over training over checkpoints, data and models over config) and no import circle."""
    linter = shutil.which("lint-imports")
    assert linter, "import-linter is a test dependency (pyproject's test extra)"
    result = subprocess.run([linter, "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_the_top_level_holds_only_the_public_face_and_one_folder_per_concern():
    files = {p.name for p in PACKAGE.iterdir() if p.is_file() and p.suffix == ".py"}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert files == PUBLIC_FACE
    assert folders == CONCERNS


def test_no_module_or_function_is_longer_than_a_reader_can_hold():
    long_modules, long_functions = [], []
    for path in _modules():
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(path.relative_to(PACKAGE))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                long_functions.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert long_modules == [] and long_functions == []


def test_the_trainer_class_reads_in_one_sitting():
    tree = ast.parse((PACKAGE / "training" / "trainer.py").read_text())
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "AZRTrainer")
    assert trainer.end_lineno - trainer.lineno + 1 < MAX_TRAINER_LINES
