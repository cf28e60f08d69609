"""Command line: ``python -m data_fetch NAME [--dest DIR] [--timeout S] [...]`` or ``--list``.

``medseg-edu fetch ...`` calls the same ``main``. Errors print one line and return a non-zero code;
warnings print one line too (``data_fetch: warning: ...``).

Not taught in a particular week; the README ("Real data") shows how a lesson switches to it.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import List, Optional

from .download import FetchError, human_size
from .fetch import fetch
from .registry import REGISTRY

__all__ = ["build_parser", "format_registry", "main"]


def _number(text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 if allow_zero else value > 0) or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected a {'non-negative' if allow_zero else 'positive'} number, got {text!r}")
    return value


def _positive(text: str) -> float:
    return _number(text, allow_zero=False)


def _non_negative(text: str) -> float:
    return _number(text, allow_zero=True)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"data_fetch: warning: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the tests and the docs).

    Shape: () -> argparse.ArgumentParser.
    """
    parser = argparse.ArgumentParser(
        prog="python -m data_fetch",
        description="Download a real public data set into the course layout (see --list).")
    parser.add_argument("name", nargs="?", help="data set name, e.g. msd-hippocampus")
    parser.add_argument("--dest", default=None,
                        help="destination folder (default: $MEDSEG_DATA/datasets, "
                             "i.e. ~/.cache/medseg-edu/datasets)")
    parser.add_argument("--list", action="store_true", help="list the data sets and exit")
    parser.add_argument("--timeout", type=_positive, default=30.0,
                        help="network timeout in seconds: the longest wait for bytes (default 30)")
    parser.add_argument("--min-speed", type=_non_negative, default=1000.0, metavar="BYTES_PER_S",
                        help="stop a download that brings fewer bytes per second than this over "
                             "a --timeout stretch; the next run resumes it (default 1000; 0: off)")
    parser.add_argument("--deadline", type=_positive, default=None, metavar="S",
                        help="stop a file that has not finished downloading after S seconds; the "
                             "next run resumes it (default: no limit)")
    parser.add_argument("--lock-timeout", type=_non_negative, default=3600.0, metavar="S",
                        help="how long to wait for another fetch of the same data set to finish "
                             "(default 3600)")
    parser.add_argument("--forget-lock", action="store_true",
                        help="forget the SHA-256 recorded in data_fetch.lock.json for this data "
                             "set (after the distributor published a new version)")
    return parser


def format_registry() -> str:
    """The registry as a table: name, approximate size, licence, title.

    Shape: () -> multi-line str.
    """
    lines = [f"{'name':<16} {'size':>9}  {'licence':<34} description"]
    for entry in REGISTRY.values():
        lines.append(f"{entry.name:<16} {human_size(entry.size_bytes):>9}  {entry.licence:<34} "
                     f"{entry.title}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command; return 0 on success, 1 on a fetch error, 2 on bad arguments.

    Shape: list of arguments (default sys.argv[1:]) -> exit code.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:          # argparse printed the usage line already
        return int(exit_.code or 0)
    if args.list:
        print(format_registry())
        return 0
    if not args.name:
        print(f"data_fetch: error: give a data set name ({', '.join(REGISTRY)}) or --list",
              file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            folder = fetch(args.name, dest=args.dest, timeout=args.timeout,
                           min_speed=args.min_speed, deadline=args.deadline,
                           lock_timeout=args.lock_timeout, forget_lock=args.forget_lock)
    except (FetchError, ValueError, TypeError) as error:
        print(f"data_fetch: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("data_fetch: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print(folder)
    return 0
