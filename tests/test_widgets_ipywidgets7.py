"""The widget tests again, under ipywidgets 7.7.1, the version Colab ships (tests/data/colab_packages.txt).

The cheapest honest way measured here: ``pip install --no-deps --target`` of ipywidgets 7.7.1 and
ipython_genutils (which 7.x imports) into a temporary folder (about 2 s), put first on PYTHONPATH of a
subprocess that runs tests/test_widgets.py (about 10 s on a 2-core machine). Everything else (IPython,
traitlets, matplotlib, medseg_edu) is this environment's. widgetsnbextension 3.x and
jupyterlab_widgets 1.x are left out: they hold only the browser-side code, which these tests never load
(the browser side runs in tests/test_browser.py, under ipywidgets 8). Skipped when pip cannot reach an
index.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLAB_IPYWIDGETS = "7.7.1"


@pytest.mark.slow
def test_widget_tests_pass_under_colabs_ipywidgets_7(tmp_path):
    target = tmp_path / "ipywidgets7"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
         "--target", str(target), f"ipywidgets=={COLAB_IPYWIDGETS}", "ipython_genutils"],
        capture_output=True, text=True, timeout=300)
    if install.returncode != 0:
        pytest.skip(f"could not install ipywidgets {COLAB_IPYWIDGETS} (no package index?): "
                    f"{install.stderr.strip().splitlines()[-1:]}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    version = subprocess.run([sys.executable, "-c", "import ipywidgets; print(ipywidgets.__version__)"],
                             env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert version == COLAB_IPYWIDGETS
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-W", "ignore::DeprecationWarning",
                          str(ROOT / "tests" / "test_widgets.py")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
