"""The course website (scripts/build_site.py): every week and every public module has a page, no internal
link is broken, the instructor guide comes from README, and the pages give no solutions away.

The test builds without executing the notebooks (about 45 s on a busy 2-core machine; executing every
week in fast mode would cost as much again as the notebook tests, too much for CI). Build the site with
figures by hand: ``python scripts/build_site.py --out build/site --execute``. Skipped without the
``docs`` extra (``pip install -e ".[docs]"``; .ci/run installs it).
"""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("sphinx", reason="the site needs the docs extra: pip install -e '.[docs]'")
pytest.importorskip("myst_nb", reason="the site needs the docs extra: pip install -e '.[docs]'")
pytest.importorskip("nbgrader", reason="the site's student pages need nbgrader (docs extra)")

pytestmark = [pytest.mark.site, pytest.mark.slow]


def _script():
    spec = importlib.util.spec_from_file_location("build_site", ROOT / "scripts" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    build_site = _script()
    out = tmp_path_factory.mktemp("site") / "html"
    modules = build_site.public_modules()                 # before the build: the same list it documents
    weeks = [p.stem for p in build_site.week_notebooks()]
    build_site.build_site(out)
    return build_site, out, modules, weeks


def test_every_week_and_module_has_a_page_and_no_link_is_broken(site):
    build_site, out, modules, weeks = site
    assert len(weeks) >= 6 and "medseg_edu.widgets" in modules and "medseg_edu.losses" in modules
    assert not any(part.startswith("_") for name in modules for part in name.split("."))
    assert build_site.site_problems(out, modules=modules, weeks=weeks) == []


def test_pages_link_each_other(site):
    _, out, modules, weeks = site
    index = (out / "index.html").read_text()
    assert 'href="weeks.html"' in index and 'href="api/index.html"' in index and 'href="instructors.html"' in index
    listing = (out / "weeks.html").read_text()
    for week in weeks:
        assert f'href="weeks/{week}.html"' in listing
    api = (out / "api" / "index.html").read_text()
    for name in modules:
        assert f'href="{name}.html"' in api


def test_instructor_guide_is_readmes_section(site):
    _, out, _, _ = site
    page = (out / "instructors.html").read_text()
    assert "medseg-edu grade" in page and "gradebook.csv" in page and "tampering" in page
    assert "Real data" not in page                       # the include stops before the next sections


def test_week_pages_are_student_versions(site):
    _, out, _, weeks = site
    for week in weeks:
        page = (out / "weeks" / f"{week}.html").read_text()
        assert "BEGIN SOLUTION" not in page and "BEGIN HIDDEN TESTS" not in page, week
    assert "NotImplementedError" in (out / "weeks" / f"{weeks[0]}.html").read_text()


def test_a_module_page_shows_its_docstrings(site):
    _, out, _, _ = site
    page = (out / "api" / "medseg_edu.widgets.html").read_text()
    assert 'id="medseg_edu.widgets.slice_viewer"' in page and "Taught in week 1." in page
    assert 'class="problematic"' not in page
