"""The cells every course notebook starts with: the "Open in Colab" badge and the set-up cell.

The repository's address lives in one place, ``[project.urls] Repository`` in pyproject.toml; the
badge and the Colab install line are generated from it here, and a test checks that every notebook's
first two cells equal what these functions produce (``check_notebook_headers``).

The set-up cell installs the package on Colab with ``%pip`` *without* replacing anything Colab ships
(torch, numpy, ipywidgets 7.7, the Jupyter packages, matplotlib, ...): pyproject.toml asks only for
lower bounds that Colab's versions satisfy (tests/test_colab.py checks them against
tests/data/colab_packages.txt), and the cell passes pip a constraints file with every installed
distribution's version, so that a new dependency's own requirements (nilearn's newest release wants
a newer pandas than Colab's) make pip choose an older release of it rather than replace Colab's
package. When the install fails, the cell raises an error that says what to do.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Union

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell

__all__ = ["repository_url", "colab_badge_markdown", "colab_install_requirement", "setup_cell_source",
           "header_cells", "check_notebook_headers", "sync_notebook_headers"]

PathLike = Union[str, "os.PathLike[str]"]
_ROLE = "medseg_edu_role"


def repository_url() -> str:
    """The project's repository address, read from pyproject.toml (source checkout) or the installed
    package's metadata (``Project-URL: Repository, ...``)."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.exists():
        match = re.search(r'^Repository\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
        if match:
            return match.group(1).rstrip("/")
    from importlib.metadata import metadata

    for entry in metadata("medseg-edu").get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return url.strip().rstrip("/")
    raise RuntimeError("no Repository URL in the medseg-edu package metadata")


def colab_badge_markdown(notebook_path: str, *, branch: str = "main") -> str:
    """Markdown of an "Open in Colab" badge for a notebook at ``notebook_path`` in the repository.

    Example:
        >>> colab_badge_markdown("course/student/week1_registration.ipynb")  # doctest: +ELLIPSIS
        '[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab...'
    """
    github = repository_url().replace("https://github.com/", "")
    link = f"https://colab.research.google.com/github/{github}/blob/{branch}/{notebook_path}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({link})"


def colab_install_requirement() -> str:
    """The pip requirement the set-up cell installs on Colab: the package straight from the repository
    (``[project.urls] Repository`` in pyproject.toml, the one place the address is written)."""
    return f"medseg-edu @ git+{repository_url()}"


def setup_cell_source() -> str:
    """Source of the set-up cell (always the first code cell of a course notebook)."""
    requirement = colab_install_requirement()
    return f'''# Set-up: run this cell first. On Google Colab it installs the course package and keeps every
# package Colab ships (PyTorch, NumPy, ipywidgets, ...). Elsewhere it only checks the set-up.
import importlib
import importlib.util
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # CPU threads wait without spinning (faster on 2 cores)
if "google.colab" in sys.modules and importlib.util.find_spec("medseg_edu") is None:
    # Pin what the runtime already has, so pip adds packages but never replaces Colab's own (it picks
    # older releases of new dependencies instead, e.g. a nilearn that accepts Colab's pandas).
    from importlib.metadata import distributions
    pins = {{}}
    for dist in distributions():  # the first one on sys.path wins, as for imports
        if dist.metadata["Name"]:
            pins.setdefault(dist.metadata["Name"].lower(), dist.version)
    with open("/tmp/medseg-edu-keep.txt", "w") as keep:
        keep.write("\\n".join(f"{{name}}=={{version}}" for name, version in sorted(pins.items())))
    try:
        %pip install --quiet --constraint /tmp/medseg-edu-keep.txt "{requirement}"
    except Exception as error:  # pip's own errors are printed above; this catches the magic failing
        print(f"pip failed: {{error}}")
    importlib.invalidate_caches()
    if importlib.util.find_spec("medseg_edu") is None:
        raise RuntimeError(
            "Could not install medseg-edu (pip's message is above). Check the internet connection, "
            "then run this in a new cell, and this cell again:\\n"
            '    %pip install --constraint /tmp/medseg-edu-keep.txt "{requirement}"\\n'
            "Still failing? Report it at {repository_url()}/issues")
    print("Installed medseg-edu. If an import below fails, use Runtime > Restart session, then run again.")

import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
print(f"PyTorch {{torch.__version__}} on {{DEVICE}}" + ("" if DEVICE == "cuda" else
      " -- no GPU found: everything runs on the CPU (slower, fine for this course)"))
%matplotlib inline'''


def header_cells(notebook_name: str, *, title: str) -> List[nbformat.NotebookNode]:
    """The first two cells of ``course/<notebook_name>``: title with Colab badge, then set-up.

    The badge points at the instructor copy; ``medseg-edu release`` points it at course/student/.
    Both cells carry nbgrader "locked" metadata, so students cannot delete them.
    """
    lock = {"grade": False, "solution": False, "locked": True, "schema_version": 3}
    badge = new_markdown_cell(f"{colab_badge_markdown('course/' + notebook_name)}\n\n# {title}",
                              metadata={_ROLE: "title", "nbgrader": {**lock, "grade_id": "header_title"}})
    setup = new_code_cell(setup_cell_source(),
                          metadata={_ROLE: "setup", "nbgrader": {**lock, "grade_id": "header_setup"}})
    return [badge, setup]


def _title_of(cell) -> str:
    match = re.search(r"^# (.+)$", cell.source, re.MULTILINE)
    return match.group(1).strip() if match else ""


def check_notebook_headers(course_dir: PathLike) -> List[str]:
    """Problems with the first two cells of each ``week*.ipynb`` (empty list: all current)."""
    problems = []
    for path in sorted(Path(course_dir).glob("week*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if len(nb.cells) < 2:
            problems.append(f"{path.name}: fewer than two cells")
            continue
        wanted = header_cells(path.name, title=_title_of(nb.cells[0]))
        for got, want in zip(nb.cells[:2], wanted):
            if got.cell_type != want.cell_type or got.source != want.source:
                problems.append(f"{path.name}: {want.metadata[_ROLE]} cell is stale; run "
                                f"medseg_edu.course.sync_notebook_headers")
    return problems


def sync_notebook_headers(course_dir: PathLike) -> List[Path]:
    """Rewrite the badge and set-up cells of each ``week*.ipynb`` from ``header_cells``."""
    changed = []
    for path in sorted(Path(course_dir).glob("week*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        wanted = header_cells(path.name, title=_title_of(nb.cells[0]) if nb.cells else path.stem)
        if [c.source for c in nb.cells[:2]] != [c.source for c in wanted]:
            roles = [c.metadata.get(_ROLE) for c in nb.cells[:2]]
            for old, new in zip(nb.cells[:2], wanted):
                if old.metadata.get(_ROLE) == new.metadata[_ROLE] and "id" in old:
                    new["id"] = old["id"]                  # keep cell ids: smaller diffs, stable links
            keep = nb.cells[sum(1 for r in roles if r in ("title", "setup")):]
            nb.cells = wanted + keep
            nbformat.write(nb, path)
            changed.append(path)
    return changed
