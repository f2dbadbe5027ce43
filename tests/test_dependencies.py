"""Dependencies that earn their place: the runtime dependencies are exactly the distributions
whose modules the package imports. A dependency nothing imports (pandas and aiofiles were)
weighs on every install; an import nothing declares breaks the installed tool (the install
test would meet it too, slowly)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(package: Path) -> set[str]:
    """The top-level modules the package's code imports, its own and the standard library's
    left out."""
    found: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"importer"}


#: Declared, though no ``import`` names them: data that a standard module reads.
DATA = {"tzdata": "zoneinfo's database, where the system has none (slim images, Windows)"}
#: Imported only where an extra is used (``sources.objects``: s3:// recordings), and declared
#: in that extra, not among the runtime dependencies.
EXTRAS = {"fsspec": "s3"}


def test_runtime_dependencies_are_what_the_package_imports() -> None:
    declared = {normalized(re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0])
                for r in PROJECT["dependencies"]}
    owners = packages_distributions()
    used = {normalized(dist) for module in imported_modules(ROOT / "importer") - set(EXTRAS)
            for dist in owners[module]}
    extras = PROJECT["optional-dependencies"]
    assert all(any(r.startswith(m) for r in extras[x]) for m, x in EXTRAS.items())

    assert used | set(DATA) == declared
    assert not {"pandas", "aiofiles", "numpy"} & declared


def test_the_benchmarks_baseline_is_an_extra() -> None:
    extras = PROJECT["optional-dependencies"]
    assert any(r.startswith("pandas") for r in extras["bench"])
    assert not any(r.startswith(("pandas", "types-aiofiles")) for r in extras["test"])
