"""Test-wide settings, shared by the library tests (tests/) and the notebooks (course/).

Notebook kernels started by nbval inherit this process's environment, so setting the variables
here puts every notebook in fast mode and keeps progress bars quiet.
"""
import os

import pytest

os.environ.setdefault("MEDSEG_FAST", "1")
os.environ.setdefault("MEDSEG_QUIET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# See medseg_edu/__init__.py: spinning OpenMP threads slow torch down badly on 2 shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny models run fastest (and repeat exactly) on one thread, even on a
    busy machine. Test modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
