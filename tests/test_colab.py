"""On Colab, installing medseg-edu replaces nothing Colab ships, and a failed install says what to do.

tests/data/colab_packages.txt lists what Colab's runtime ships (name==version, with its source and
date in the file). Every core requirement in pyproject.toml must be met by those versions, so pip has
no reason to install over them; the set-up cell also pins every installed distribution (a constraints
file), so a new dependency's own requirements cannot replace them either.
"""
import os
import re
import sys
import types
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from medseg_edu import course

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
# Core requirements Colab does not ship: pip adds them (the set-up cell's constraints keep their own
# requirements from replacing Colab's packages). Adding a dependency means deciding it belongs here.
NEW_ON_COLAB = {"nilearn"}
SHIPPED = {"torch", "numpy", "ipywidgets", "matplotlib", "pandas", "scipy", "scikit-learn", "pillow", "tqdm",
           "nbformat", "nbclient", "nibabel", "ipykernel", "jupyter-client", "notebook"}


def colab_packages():
    versions = {}
    for line in (ROOT / "tests" / "data" / "colab_packages.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            versions[canonicalize_name(name)] = Version(version)
    return versions


def core_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_colab_list_is_readable_and_has_what_the_course_relies_on():
    versions = colab_packages()
    assert SHIPPED <= set(versions), SHIPPED - set(versions)
    assert versions["ipywidgets"].major == 7        # Colab's front end still runs ipywidgets 7


def test_every_core_requirement_is_met_by_what_colab_ships():
    versions = colab_packages()
    for requirement in core_requirements():
        name = canonicalize_name(requirement.name)
        if name in NEW_ON_COLAB:
            assert name not in versions, f"{name} now ships with Colab: take it out of NEW_ON_COLAB"
            continue
        assert name in versions, f"{name} is not in Colab's list: add it to NEW_ON_COLAB if pip may add it"
        assert requirement.specifier.contains(versions[name], prereleases=True), (
            f"pyproject asks for {requirement}, Colab ships {name}=={versions[name]}: pip would replace it")


def test_ipywidgets_requirement_accepts_colabs_7_7_and_8():
    [widgets] = [r for r in core_requirements() if r.name == "ipywidgets"]
    assert widgets.specifier.contains("7.7.1") and widgets.specifier.contains("8.1.5")


def _run_setup_cell(monkeypatch, tmp_path, pip_installs):
    """Execute the set-up cell as on Colab (medseg_edu not yet importable); returns the magics called."""
    calls = []
    state = {"installed": False}
    real_find_spec = __import__("importlib.util").util.find_spec

    def find_spec(name, *args):
        if name == "medseg_edu" and not state["installed"]:
            return None
        return real_find_spec(name, *args)

    class FakeIPython:
        def run_line_magic(self, name, line):
            calls.append((name, line))
            if name == "pip":
                state["installed"] = pip_installs

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr("importlib.util.find_spec", find_spec)
    source = course.setup_cell_source().replace("/tmp/medseg-edu-keep.txt", str(tmp_path / "keep.txt"))
    python = TransformerManager().transform_cell(source)
    exec(compile(python, "<setup>", "exec"), {"get_ipython": lambda: FakeIPython()})
    return calls


def test_setup_cell_pins_installed_packages_when_installing(monkeypatch, tmp_path, capsys):
    from importlib.metadata import version

    calls = _run_setup_cell(monkeypatch, tmp_path, pip_installs=True)
    assert [name for name, _ in calls] == ["pip", "matplotlib"]
    assert calls[0][1] == (f'install --quiet --constraint {tmp_path / "keep.txt"} '
                           f'"medseg-edu @ git+{course.repository_url()}"')
    pins = dict(line.split("==", 1) for line in (tmp_path / "keep.txt").read_text().splitlines())
    for name in ("torch", "numpy", "ipywidgets", "matplotlib"):
        assert pins[name] == version(name)
    assert "Installed medseg-edu" in capsys.readouterr().out


def test_failed_install_says_what_to_do(monkeypatch, tmp_path):
    url = course.repository_url()
    with pytest.raises(RuntimeError, match=re.escape(f'%pip install --constraint {tmp_path / "keep.txt"} '
                                                     f'"medseg-edu @ git+{url}"')) as info:
        _run_setup_cell(monkeypatch, tmp_path, pip_installs=False)
    assert "Check the internet connection" in str(info.value) and f"{url}/issues" in str(info.value)


def test_install_source_is_written_once():
    # the address appears in pyproject's [project.urls] and nowhere else in the package's code
    url = course.repository_url()
    assert (ROOT / "pyproject.toml").read_text().count(url) == 1
    for path in (ROOT / "medseg_edu").rglob("*.py"):
        assert url not in path.read_text(), f"{path.name} writes the repository address itself"
    assert os.path.basename(url)
