"""The project's packaging files agree with each other and with README.md."""
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment_pip_lines():
    lines = []
    in_pip = False
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        text = raw.split("#", 1)[0].rstrip()
        if text.strip() == "- pip:":
            in_pip = True
            continue
        if in_pip and text.strip().startswith("- "):
            lines.append(text.strip()[2:].strip())
    return [line for line in lines if line != "-e ."]


def _name(requirement):
    return re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_requirements_as_pyproject():
    project = _pyproject()["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    assert set(_environment_pip_lines()) == wanted


def test_dependencies_have_lower_bounds_only():
    project = _pyproject()["project"]
    everything = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        everything += extra
    for requirement in everything:
        assert ">=" in requirement, f"{requirement} has no lower bound"
        assert "<" not in requirement.replace(">=", ""), f"{requirement} has an upper bound"
        assert "==" not in requirement, f"{requirement} is pinned"


def test_torch_is_never_pinned_anywhere():
    for name in ("pyproject.toml", "environment.yml"):
        text = (ROOT / name).read_text()
        assert not re.search(r"torch\s*(==|<|~=)", text), name


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install = re.search(r"pip install -e \"\.\[dev\]\"", readme)
    assert install, "README must give the install command"
    assert 'pip install --quiet -e ".[dev]"' in ci
    assert re.search(r"^pytest$", ci, re.MULTILINE), ".ci/run must run README's test command"
    assert "\npytest\n" in readme


def test_console_script_points_at_the_cli():
    assert _pyproject()["project"]["scripts"]["medseg-edu"] == "medseg_edu.cli:main"


def test_repository_url_is_defined_once():
    urls = _pyproject()["project"]["urls"]
    assert urls["Repository"].startswith("https://")
