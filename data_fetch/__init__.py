"""data_fetch: the real public data sets of the course, one command away.

``fetch("msd-brain")`` (or ``python -m data_fetch msd-brain``, or ``medseg-edu fetch msd-brain``)
downloads a registered data set, verifies its checksum, unpacks it safely and writes it in the same
layout as the course's built-in phantoms, so a notebook switches to real data by changing one path.
``python -m data_fetch --list`` shows the data sets with their sizes and licences.

``data_fetch`` uses ``medseg_edu``; ``medseg_edu`` never imports ``data_fetch`` (except its CLI).
"""
from .cli import main
from .download import (ChecksumMismatchError, FetchError, NetworkError, NotEnoughSpaceError,
                       UnsafeArchiveError)
from .extract import safe_extract
from .fetch import default_dest, fetch
from .lockfile import LOCK_NAME
from .registry import REGISTRY, DatasetEntry, Source, get_entry

__all__ = ["fetch", "main", "default_dest", "safe_extract", "get_entry", "REGISTRY", "DatasetEntry",
           "Source", "LOCK_NAME", "FetchError", "NetworkError", "ChecksumMismatchError",
           "NotEnoughSpaceError", "UnsafeArchiveError"]
