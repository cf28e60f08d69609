"""medseg_edu.course: the Colab badge and set-up cell of every notebook, generated from one URL."""
import json
import re
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from medseg_edu import course

ROOT = Path(__file__).resolve().parents[1]


def test_repository_url_comes_from_pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    assert f'Repository = "{course.repository_url()}"' in text


def test_badge_points_at_the_notebook_in_the_repository():
    badge = course.colab_badge_markdown("course/student/week1_registration.ipynb")
    owner_repo = course.repository_url().split("github.com/")[1]
    assert f"colab.research.google.com/github/{owner_repo}/blob/main/course/student/week1_registration.ipynb" in badge


def test_setup_cell_is_valid_ipython_using_only_pip_and_matplotlib_magics():
    source = course.setup_cell_source()
    magics = re.findall(r"^\s*%(\w+)", source, re.MULTILINE)
    assert set(magics) == {"pip", "matplotlib"}
    python = TransformerManager().transform_cell(source)
    compile(python, "<setup>", "exec")
    assert "run_line_magic('pip', 'install --quiet --constraint /tmp/medseg-edu-keep.txt \"medseg-edu @ git+" in python
    assert "torch" not in course.colab_install_requirement()


def test_setup_cell_does_not_install_outside_colab():
    calls = []

    class FakeIPython:
        def run_line_magic(self, name, line):
            calls.append((name, line))

    python = TransformerManager().transform_cell(course.setup_cell_source())
    namespace = {"get_ipython": lambda: FakeIPython()}
    exec(compile(python, "<setup>", "exec"), namespace)
    assert calls == [("matplotlib", "inline")]
    assert namespace["DEVICE"] in ("cpu", "cuda")


def test_course_notebooks_have_current_headers():
    notebooks = sorted((ROOT / "course").glob("week*.ipynb"))
    assert notebooks, "no course notebooks found"
    assert course.check_notebook_headers(ROOT / "course") == []


def test_sync_rewrites_a_stale_header(tmp_path):
    nb = nbformat.v4.new_notebook(cells=course.header_cells("week9_x.ipynb", title="Week 9: X"))
    nb.cells[1].source = "print('old set-up')"
    nb.cells.append(nbformat.v4.new_markdown_cell("body"))
    nbformat.write(nb, tmp_path / "week9_x.ipynb")
    assert course.check_notebook_headers(tmp_path) == ["week9_x.ipynb: setup cell is stale; run "
                                                       "medseg_edu.course.sync_notebook_headers"]
    course.sync_notebook_headers(tmp_path)
    assert course.check_notebook_headers(tmp_path) == []
    synced = nbformat.read(tmp_path / "week9_x.ipynb", as_version=4)
    assert [c.source for c in synced.cells][2:] == ["body"] and "# Week 9: X" in synced.cells[0].source


@pytest.mark.slow
def test_colab_install_keeps_an_existing_torch(tmp_path):
    """The set-up cell's pip install, in a fresh environment that already has torch: torch stays.

    The fresh environment sees this environment's torch (its package and dist-info folders, linked
    into a folder on its path), as a Colab runtime has its own torch before the set-up cell runs.
    """
    from importlib.metadata import distribution

    torch_dist = distribution("torch")
    site = Path(torch_dist.locate_file(""))
    shared = tmp_path / "preinstalled"
    shared.mkdir()
    for name in ("torch", Path(torch_dist._path).name):
        (shared / name).symlink_to(site / name)
    env_dir = tmp_path / "colab-like"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    Path(env_site, "preinstalled.pth").write_text(str(shared) + "\n")
    listed = subprocess.run([python, "-m", "pip", "list"], check=True, capture_output=True, text=True).stdout
    assert re.search(r"^torch\s", listed, re.MULTILINE), listed
    report = tmp_path / "report.json"
    # The set-up cell's requirement, with the local checkout standing in for the git URL.
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--dry-run", "--report", report,
                    f"medseg-edu @ {ROOT.as_uri()}"], check=True, timeout=900)
    installed = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "medseg-edu" in installed and "nibabel" in installed
    assert "torch" not in installed
