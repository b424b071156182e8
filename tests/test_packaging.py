"""The README's install command must bring every module the package and its tests import.

CI installs into a fresh virtual environment with ``pip install -e ".[test]"``; a module that was
installed by hand on a developer's machine (as bm25s once was) passes there and fails for a user.
"""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions

from conftest import REPO_ROOT


def _requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[<>=!~\[; ]", line)[0].lower().replace("_", "-"))
    return names


def _declared() -> set[str]:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    extras = re.search(r'pip install -e "\.\[([a-z0-9_,-]+)\]"', readme)
    assert extras, "the README's install command names no extras"
    declared = _requirement_names(config.get("options", "install_requires"))
    for extra in extras.group(1).split(","):
        declared |= _requirement_names(config.get("options.extras_require", extra))
    return declared


def _imported_top_levels() -> dict[str, str]:
    local = {p.stem for p in REPO_ROOT.glob("*/*.py")} | {p.name for p in REPO_ROOT.iterdir()}
    found: dict[str, str] = {}
    for folder in ("beir_peft", "tests"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in local:
                        found.setdefault(top, str(path.relative_to(REPO_ROOT)))
    return found


def test_every_imported_module_is_declared_for_the_readme_install():
    distributions = {
        module: {d.lower().replace("_", "-") for d in dists}
        for module, dists in packages_distributions().items()
    }
    declared = _declared()
    missing = {
        module: where
        for module, where in _imported_top_levels().items()
        if module in distributions and not distributions[module] & declared
    }
    assert not missing, f"imported but not installed by the README's command: {missing}"


def test_ci_runs_the_readme_commands_in_a_fresh_environment():
    script = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m venv" in script and "git clone" in script
    for section, block in (("Two commands", 0), ("Two commands", 1), ("Proof runs", 0)):
        assert f'readme_command "{section}" {block}' in script, (section, block)
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Two commands\n" in readme and "## Proof runs\n" in readme


def test_imports_point_down_the_layers():
    """The import-linter contracts of ``.importlinter`` hold: every import points down the stated
    layers (no upward import, no cycle between layers), and the method families stay independent.

    Run in a subprocess: import-linter configures logging for its process."""
    import os
    import subprocess

    code = (
        "import sys\n"
        "from importlinter.cli import lint_imports\n"
        "sys.exit(lint_imports(config_filename='.importlinter', no_cache=True))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
