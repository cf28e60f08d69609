"""Build the course website (Sphinx + myst-nb) into one folder of static HTML.

    python scripts/build_site.py --out build/site              # notebooks without outputs (seconds)
    python scripts/build_site.py --out build/site --execute    # run each week in fast mode first

Needs the ``docs`` extra (``pip install -e ".[docs]"``). What it does:

1. copies docs/ (Sphinx configuration, start page, instructor guide) and README.md into a staging
   folder (``<out>-src``); the instructor guide includes README's "For instructors" section, so the
   prose lives in one place;
2. writes the student version of every ``course/week*.ipynb`` (solutions and hidden tests stripped,
   as ``medseg-edu release`` does) to ``weeks/``; with ``--execute`` it first runs the instructor
   notebook in fast mode (``MEDSEG_FAST=1``) and keeps the outputs of every cell that is not a
   solution, so the pages show the fast-mode figures without giving the answers away;
3. writes one reference page per public module of ``medseg_edu`` (autodoc of its docstrings);
4. runs Sphinx's HTML builder; myst-nb never executes anything itself.

``site_problems(out)`` (used by tests/test_site.py) lists missing week or module pages and broken
internal links.
"""
from __future__ import annotations

import argparse
import html.parser
import importlib
import os
import pkgutil
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]


def public_modules() -> List[str]:
    """Every module of medseg_edu whose dotted name has no part starting with an underscore."""
    package = importlib.import_module("medseg_edu")
    names = ["medseg_edu"]
    for info in pkgutil.walk_packages(package.__path__, "medseg_edu."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def week_notebooks(course_dir: Path = ROOT / "course") -> List[Path]:
    return sorted(course_dir.glob("week*.ipynb"))


def _executed_student_notebook(path: Path, *, timeout: int):
    import nbformat
    from nbclient import NotebookClient

    from medseg_edu.grading import make_student_notebook

    instructor = nbformat.read(path, as_version=4)
    student = make_student_notebook(instructor)
    env_before = {k: os.environ.get(k) for k in ("MEDSEG_FAST", "MEDSEG_QUIET", "MPLBACKEND")}
    os.environ.update(MEDSEG_FAST="1", MEDSEG_QUIET="1")
    os.environ.pop("MPLBACKEND", None)          # the set-up cell's %matplotlib inline gives PNG outputs
    try:
        NotebookClient(instructor, timeout=timeout, kernel_name="python3", allow_errors=False,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    outputs = {cell.get("id"): cell for cell in instructor.cells}
    for cell in student.cells:
        source = outputs.get(cell.get("id"))
        is_solution = cell.metadata.get("nbgrader", {}).get("solution", False)
        if cell.cell_type == "code" and source is not None and not is_solution:
            cell.outputs = source.outputs
    return student


def build_site(out: Path, *, execute: bool = False, timeout: int = 600, quiet: bool = True) -> Path:
    """Build the website into ``out`` (HTML); returns ``out``. See the module docstring."""
    import nbformat
    from sphinx.cmd.build import build_main

    from medseg_edu.grading import make_student_notebook

    out = Path(out).resolve()
    src = out.with_name(out.name + "-src")
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(ROOT / "docs", src)
    shutil.copy2(ROOT / "README.md", src / "README.md")
    weeks = src / "weeks"
    weeks.mkdir()
    names = []
    for path in week_notebooks():
        nb = (_executed_student_notebook(path, timeout=timeout) if execute
              else make_student_notebook(nbformat.read(path, as_version=4)))
        nbformat.write(nb, weeks / path.name)
        names.append(path.stem)
    (src / "weeks.md").write_text("# The weeks\n\n```{toctree}\n:maxdepth: 1\n\n"
                                  + "".join(f"weeks/{name}\n" for name in names) + "```\n")
    api = src / "api"
    api.mkdir()
    modules = public_modules()
    for name in modules:
        # reStructuredText: autodoc's output is reST, which a MyST page would read as Markdown
        title = f"``{name}``"
        # a package page documents what the package defines itself, not what it re-exports
        package = ["   :ignore-module-all:\n"] if hasattr(importlib.import_module(name), "__path__") else []
        (api / f"{name}.rst").write_text(f"{title}\n{'=' * len(title)}\n\n.. automodule:: {name}\n   :members:\n"
                                         + "".join(package))
    (api / "index.md").write_text("# Library reference\n\nOne page per public module, from its docstrings.\n\n"
                                  "```{toctree}\n:maxdepth: 1\n\n" + "".join(f"{n}\n" for n in modules) + "```\n")
    args = ["-b", "html", "-E", str(src), str(out)] + (["-q"] if quiet else [])
    code = build_main(args)
    if code != 0:
        raise RuntimeError(f"sphinx-build failed with exit code {code} (run without --quiet for details)")
    return out


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: List[str] = []
        self.ids: set = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("href", "src") and value:
                self.links.append(value)
            if key in ("id", "name") and value:
                self.ids.add(value)


def site_problems(out: Path, *, modules: Optional[List[str]] = None, weeks: Optional[List[str]] = None) -> List[str]:
    """Missing pages (one per week, one per public module) and broken internal links in a built site."""
    out = Path(out)
    problems = []
    for week in weeks if weeks is not None else [p.stem for p in week_notebooks()]:
        if not (out / "weeks" / f"{week}.html").exists():
            problems.append(f"no page for {week}")
    parsed: Dict[Path, _Links] = {}
    for page in out.rglob("*.html"):
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        parsed[page.resolve()] = parser
    for name in modules if modules is not None else public_modules():
        page = (out / "api" / f"{name}.html").resolve()
        if page not in parsed:
            problems.append(f"no page for module {name}")
        elif f"module-{name}" not in parsed[page].ids:
            problems.append(f"module {name}: autodoc could not import it (no module-{name} anchor)")
    for page, parser in parsed.items():
        for link in parser.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "data:", "javascript:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{page.relative_to(out.resolve())}: broken link {link}")
            elif parts.fragment and target.suffix == ".html" and target in parsed \
                    and unquote(parts.fragment) not in parsed[target].ids:
                problems.append(f"{page.relative_to(out.resolve())}: no anchor for {link}")
    return problems


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="build/site", help="output folder (default build/site)")
    parser.add_argument("--execute", action="store_true", help="run every week in fast mode first (minutes)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell with --execute")
    parser.add_argument("--verbose", action="store_true", help="show Sphinx's output")
    args = parser.parse_args(argv)
    out = build_site(Path(args.out), execute=args.execute, timeout=args.timeout, quiet=not args.verbose)
    problems = site_problems(out)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"site: {out / 'index.html'}" + (f" ({len(problems)} problems)" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
