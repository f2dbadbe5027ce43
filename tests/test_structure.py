"""The code keeps the shape the README and STYLE promise: one exception tree drawn in its
docstring, a public API that is exactly ``__all__``, walls between the modules."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import importer
from importer import errors

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "importer"


def test_exception_tree_matches_its_docstring() -> None:
    defined = {name for name, obj in vars(errors).items()
               if inspect.isclass(obj) and issubclass(obj, Exception)
               and obj.__module__ == errors.__name__ and name != "Problem"}

    def walk(cls: type) -> set[str]:
        found = {cls.__name__}
        for sub in cls.__subclasses__():
            if sub.__module__ == errors.__name__:
                found |= walk(sub)
        return found

    assert walk(errors.ImporterError) == defined
    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__ or "")) | {"ImporterError"}
    assert drawn == defined


def test_public_api_is_exactly_all() -> None:
    assert importer.__all__ == sorted(importer.__all__)
    public = {n for n in dir(importer) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(importer, n))}
    assert public - modules == set(importer.__all__)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
    return names


def modules() -> list[Path]:
    """Every module of the package, in every subpackage, but the sandbox (the API's stand-in,
    held to its own wall)."""
    return [p for p in PACKAGE.rglob("*.py") if "sandbox" not in p.relative_to(PACKAGE).parts]


LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command as c; " \
    "sys.argv[0] = 'lint-imports'; sys.exit(c())"


def test_the_layers_contract_holds() -> None:
    """pyproject.toml's [tool.importlinter]: the layers of docs/architecture.md, the sandbox
    apart, no import cycle inside a part. Run as CI and a developer would run it."""
    done = subprocess.run([sys.executable, "-c", LINT_IMPORTS, "--no-cache"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_the_sandbox_imports_nothing_of_the_importer() -> None:
    for path in (PACKAGE / "sandbox").rglob("*.py"):
        for name in imports_of(path):
            assert not name.startswith("importer"), (path, name)
            assert not name.startswith(".."), (path, name)


def test_io_free_modules_stay_io_free() -> None:
    for module in ("client/limits", "client/responses", "client/auth", "manifest/records",
                   "manifest/normalizers", "manifest/call_dates", "manifest/identity",
                   "events", "errors"):
        names = imports_of(PACKAGE / f"{module}.py")
        assert not {"aiohttp", "sqlite3", "aiofiles"} & names, module


def test_only_the_client_speaks_aiohttp_and_one_session_per_run() -> None:
    for path in modules():
        if path.parent.name != "client":
            assert "aiohttp" not in imports_of(path), path.name
    assert sum(p.read_text().count("ClientSession(") for p in modules()) == 1


def test_environment_is_read_only_in_settings() -> None:
    for path in modules():
        if path.parent.name != "settings":
            assert "os.environ" not in path.read_text(), path.name


def test_pipeline_has_a_bounded_queue_and_no_tqdm() -> None:
    text = (PACKAGE / "run" / "pipeline.py").read_text()
    assert re.search(r"asyncio\.Queue\((self\.settings|s)\.effective_queue_size\)", text)
    assert "tqdm" not in text


def test_functions_and_classes_stay_small_and_the_pipeline_readable_in_one_sitting() -> None:
    """No function over 60 lines, no class over 250 (outside the sandbox, the API's stand-in);
    pipeline.py under 250 lines."""
    too_long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            limit = 60 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else \
                250 if isinstance(node, ast.ClassDef) else None
            if limit is not None and node.end_lineno is not None and \
                    node.end_lineno - node.lineno + 1 > limit:
                too_long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert too_long == []
    assert len((PACKAGE / "run" / "pipeline.py").read_text().splitlines()) < 250


def test_modules_stay_under_400_lines() -> None:
    """A module that grows past 400 lines holds more than one job: split it by job (the
    sandbox, the API's stand-in, is apart)."""
    long = [f"{p.relative_to(PACKAGE)}: {n}" for p in modules()
            if (n := len(p.read_text().splitlines())) > 400]
    assert long == []


def test_test_modules_take_shared_helpers_from_conftest_or_helpers_only() -> None:
    for path in (ROOT / "tests").glob("test_*.py"):
        for name in imports_of(path):
            assert not name.startswith(".test_"), (path.name, name)
