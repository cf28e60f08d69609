"""The ``medseg-edu`` command: demo, phantom, fetch, export-nnunet, release, grade.

Each sub-command is a thin shell around a library function, so everything the command does can also
be done from a notebook. Run ``medseg-edu --help`` for the list and ``medseg-edu CMD --help`` for one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _shape(text: str) -> tuple:
    try:
        parts = tuple(int(p) for p in text.lower().replace("x", ",").split(",") if p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape like 128,128,128, got {text!r}") from None
    return parts


def _floats(text: str) -> tuple:
    try:
        return tuple(float(p) for p in text.replace("x", ",").split(",") if p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1.75,1.75,1.75, got {text!r}") from None


def _cmd_phantom(args: argparse.Namespace) -> int:
    from medseg_edu.data import phantoms

    if args.kind == "brain":
        kwargs = {"cases": args.cases, "seed": args.seed, "site": args.site,
                  "cases_per_patient": args.cases_per_patient, "test_cases": args.test_cases}
        if args.shape:
            kwargs["shape"] = args.shape
        if args.spacing:
            kwargs["spacing_mm"] = args.spacing
        if args.misalign:
            if len(args.misalign) != 2:
                raise ValueError(f"--misalign takes DEGREES,MM (two numbers), got {args.misalign}")
            kwargs["misalign"] = args.misalign
        root = phantoms.write_brain_dataset(args.out, **kwargs)
    else:
        kwargs = {"cases": args.cases, "seed": args.seed, "site": args.site}
        if args.shape:
            if len(args.shape) != 1:
                raise ValueError(f"--shape for skin images is one size (e.g. 256), got {args.shape}")
            kwargs["size"] = args.shape[0]
        root = phantoms.write_skin_dataset(args.out, **kwargs)
    print(f"wrote {args.kind} data set to {root}")
    if args.preview:
        print(f"wrote preview figure {_write_preview(args.kind, root)}")
    return 0


def _write_preview(kind: str, root: Path) -> Path:
    """preview.png next to the data: first brain case (4 sequences + label) or a skin montage."""
    import matplotlib

    matplotlib.use("Agg")
    from medseg_edu import viz
    from medseg_edu.data import io

    if kind == "brain":
        first = io.list_brain_cases(root).iloc[0]
        figure = viz.show_case(io.load_brain_case(first.image_path, first.label_path))
    else:
        table = io.list_skin_cases(root).head(8)
        cases = []
        for row in table.itertuples():
            case = io.load_skin_case(row.image_path, row.mask_path)
            case["fitzpatrick"] = getattr(row, "fitzpatrick", None)
            cases.append(case)
        figure = viz.show_skin_montage(cases)
    path = root / "preview.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def _cmd_demo(args: argparse.Namespace) -> int:
    from medseg_edu import demo

    demo.run_demo(out_dir=args.out, full=args.full, device=args.device, seed=args.seed)
    return 0


def _cmd_export_nnunet(args: argparse.Namespace) -> int:
    from medseg_edu.data.nnunet import export_nnunet

    out = export_nnunet(args.source, args.out, dataset_id=args.dataset_id, name=args.name, n_folds=args.folds,
                        overwrite=args.overwrite)
    print(f"wrote {out}; set nnUNet_raw={out.parent} and run nnUNetv2_plan_and_preprocess -d {args.dataset_id}")
    return 0


def _cmd_release(args: argparse.Namespace) -> int:
    from medseg_edu import grading

    written = grading.release_course(args.source, out_dir=args.out)
    for path in written:
        print(f"wrote {path}")
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    from medseg_edu import grading

    reports = grading.grade_submissions(args.submissions, source=args.source, out_dir=args.out, jobs=args.jobs,
                                        timeout_s=args.timeout, memory_mb=args.memory_mb,
                                        student=args.student, clear_flags=args.clear_flag)
    for report in reports:
        print(grading.format_report(report))
    print(f"wrote {len(reports)} report(s) and gradebook.csv to {args.out}")
    # a student's broken or hostile notebook is the student's problem; exit 1 only if the grader failed
    return 1 if any("grader_error" in report["flags"] for report in reports) else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``medseg-edu`` (exposed for the tests and the docs)."""
    parser = argparse.ArgumentParser(prog="medseg-edu", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train a U-Net on the built-in brain data and evaluate it")
    p.add_argument("--out", type=Path, default=Path("medseg-demo"), help="output folder (default: medseg-demo)")
    p.add_argument("--full", action="store_true", help="train longer for better results")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("phantom", help="write a synthetic data set (brain MRI or skin lesions)")
    p.add_argument("kind", choices=["brain", "skin"])
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--cases", type=_positive_int, default=8, help="number of cases/images (default: 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--site", default="A", help="site/scanner profile (default: A)")
    p.add_argument("--shape", type=_shape, default=None,
                   help="brain: grid size like 128,128,128; skin: image size like 256")
    p.add_argument("--spacing", type=_floats, default=None, help="brain: voxel size in mm, like 1.75,1.75,1.75")
    p.add_argument("--misalign", type=_floats, default=None,
                   help="brain: move FLAIR/T1gd/T2w by up to DEGREES,MM (week 1 registration)")
    p.add_argument("--cases-per-patient", type=_positive_int, default=1, help="brain: follow-up scans per patient")
    p.add_argument("--test-cases", type=int, default=2, help="brain: held-out cases in imagesTs/ (default: 2)")
    p.add_argument("--preview", action="store_true", help="also write preview.png (first case or a montage)")
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser("fetch", help="download a real public data set (see --list)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=None)

    p = sub.add_parser("export-nnunet", help="write an MSD-layout folder as an nnU-Net v2 raw data set")
    p.add_argument("source", type=Path, help="MSD-layout folder (imagesTr/, labelsTr/, participants.tsv)")
    p.add_argument("--out", type=Path, required=True, help="nnUNet_raw folder to write DatasetXXX_NAME into")
    p.add_argument("--dataset-id", type=_positive_int, default=1, help="nnU-Net data set number (default: 1)")
    p.add_argument("--name", default="BrainTumourPhantom", help="data set name (default: BrainTumourPhantom)")
    p.add_argument("--folds", type=_positive_int, default=5, help="patient-level folds in splits_final.json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DatasetXXX_NAME folder")
    p.set_defaults(func=_cmd_export_nnunet)

    p = sub.add_parser("release", help="write the student notebooks (solutions and hidden tests removed)")
    p.add_argument("source", nargs="?", type=Path, default=Path("course"), help="folder of instructor notebooks")
    p.add_argument("--out", type=Path, default=None, help="default: SOURCE/student")
    p.set_defaults(func=_cmd_release)

    p = sub.add_parser("grade", help="grade student notebooks; writes JSON reports and gradebook.csv")
    p.add_argument("submissions", nargs="+", type=Path,
                   help="student notebooks, e.g. submissions/*/week2_slices_vs_patches.ipynb")
    p.add_argument("--source", type=Path, default=Path("course"), help="folder of instructor notebooks")
    p.add_argument("--out", type=Path, default=Path("grades"), help="report folder (default: grades)")
    p.add_argument("-j", "--jobs", type=_positive_int, default=1, help="submissions graded in parallel")
    p.add_argument("--student", default=None, help="student name (only with a single submission)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per cell (default: 60)")
    p.add_argument("--memory-mb", type=_positive_int, default=4096, help="memory per kernel (default: 4096)")
    p.add_argument("--clear-flag", action="append", default=[], metavar="STUDENT",
                   help="grade STUDENT without the tampering penalty (after review); repeatable")
    p.set_defaults(func=_cmd_grade)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``medseg-edu`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fetch"]:
        import data_fetch  # the one place where medseg_edu uses data_fetch

        return data_fetch.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        print(f"medseg-edu {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
