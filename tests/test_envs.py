"""The rules' conda environments (envs/*.yaml) agree with pyproject.toml and hold what they run.

Which code an environment runs comes from the rules that use it: `python -m infoopt <command>`
imports the command line (every command module, whose `configure` runs) and then that command's
`run`; `python -m papermill` runs the notebooks in an ipykernel. Imports are followed through the
package's own modules, wherever they sit in a module (also inside functions).
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infoopt.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))

# Import names whose distribution is named otherwise.
DISTRIBUTIONS = {"IPython": "ipython", "PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml"}
# pandas imports these only inside the method that needs them: method -> distribution.
PANDAS_BACKENDS = {"read_parquet": "pyarrow", "to_parquet": "pyarrow", "to_markdown": "tabulate"}


def requirements(specs: Iterable[str]) -> dict[str, Requirement]:
    return {canonicalize_name(req.name): req for req in map(Requirement, specs)}


RUNTIME = requirements(PYPROJECT["project"]["dependencies"])


def pip_requirements(env_file: Path) -> dict[str, Requirement]:
    """The `pip:` list of a conda environment file."""
    dependencies = yaml.safe_load(env_file.read_text())["dependencies"]
    pip = [item["pip"] for item in dependencies if isinstance(item, dict) and "pip" in item]
    assert len(pip) == 1, f"{env_file.name}: expected one pip: list"
    return requirements(pip[0])


def rule_commands() -> dict[str, set[str]]:
    """Environment file name -> the `python -m` commands of the rules that use it."""
    commands: dict[str, set[str]] = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^\s*rule\b", smk.read_text(), flags=re.MULTILINE)[1:]:
            env = re.search(r"envs/([\w.-]+\.yaml)", block)
            if env is None:
                continue
            found = re.findall(r"python -m (infoopt \w+|papermill)\b", block)
            assert found, f"{smk.name}: a rule with {env[1]} runs no command this test knows"
            commands.setdefault(env[1], set()).update(found)
    return commands


def module_file(name: str) -> Path | None:
    """The source file of one of the package's modules, or None for anything else."""
    base = REPO / "src" / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def notebook_code() -> list[ast.Module]:
    trees = []
    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] == "code":
                trees.append(ast.parse("".join(cell["source"]), filename=str(notebook)))
    return trees


def imports_in(tree: ast.AST, skip: str | None = None) -> tuple[set[str], set[str]]:
    """Modules `tree` imports (with `from m import x` also m.x, which may be a module) and
    distributions of the pandas backends its method calls need; the function `skip` is left out."""
    modules: set[str] = set()
    backends: set[str] = set()
    nodes = [tree]
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.FunctionDef) and node.name == skip:
            continue
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, "relative imports are not followed"
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Attribute) and node.attr in PANDAS_BACKENDS:
            backends.add(PANDAS_BACKENDS[node.attr])
        nodes.extend(ast.iter_child_nodes(node))
    return modules, backends


def needed_distributions(trees: Iterable[tuple[ast.AST, str | None]]) -> set[str]:
    """Third-party distributions that running `trees` (each with a function left out) imports,
    following the package's own modules and the packages above them."""
    needed: set[str] = set()
    seen: set[str] = set()
    todo = list(trees)
    while todo:
        modules, backends = imports_in(*todo.pop())
        needed |= backends
        for module in modules:
            top = module.split(".")[0]
            if top == "infoopt":
                parts = module.split(".")
                for name in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
                    path = module_file(name)
                    if path is not None and name not in seen:
                        seen.add(name)
                        todo.append((parse(path), None))
            elif top not in sys.stdlib_module_names:
                needed.add(DISTRIBUTIONS.get(top, top))
    return {canonicalize_name(name) for name in needed}


def command_code(command: str) -> list[tuple[ast.AST, str | None]]:
    """What `python -m <command>` runs: the notebooks for papermill, else one infoopt command."""
    if command == "papermill":
        kernel = ast.parse("import papermill, ipykernel")
        return [(kernel, None)] + [(tree, None) for tree in notebook_code()]
    name = command.removeprefix("infoopt ")
    code = [(parse(module_file("infoopt.__main__")), None)]
    for other in COMMANDS:
        path = module_file(f"infoopt.commands.{other}")
        code.append((parse(path), None if other == name else "run"))
    return code


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.name)
def test_env_pins_are_pyproject_pins(env_file):
    for name, req in pip_requirements(env_file).items():
        assert name in RUNTIME, f"{env_file.name}: {name} is no dependency in pyproject.toml"
        pinned = RUNTIME[name]
        assert req.specifier == pinned.specifier, f"{env_file.name}: {req}, pyproject: {pinned}"


def test_runtime_dependencies_are_pinned():
    for req in RUNTIME.values():
        assert str(req.specifier).startswith("=="), f"pyproject.toml: {req} is not pinned"


def test_every_env_is_used_by_a_rule():
    assert sorted(rule_commands()) == [path.name for path in ENV_FILES]


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.name)
def test_env_lists_what_its_rules_import(env_file):
    code = [tree for command in rule_commands()[env_file.name] for tree in command_code(command)]
    missing = needed_distributions(code) - set(pip_requirements(env_file))
    assert not missing, f"{env_file.name} lacks {sorted(missing)}"


def test_declared_package_data_exists():
    package_data = PYPROJECT["tool"]["setuptools"].get("package-data", {})
    for package, patterns in package_data.items():
        for pattern in patterns:
            assert list((REPO / "src" / package).glob(pattern)), f"src/{package}/{pattern} missing"
