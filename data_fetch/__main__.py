"""``python -m data_fetch NAME [--dest DIR] [--timeout S]`` and ``python -m data_fetch --list``."""
import sys

from data_fetch.cli import main

sys.exit(main())
