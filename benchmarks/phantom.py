"""Seconds per generated case of the built-in phantoms (no files written).

Run: python benchmarks/phantom.py [--repeat N]
Prints e.g. "brain case 128^3 x4: 0.41 s/case" and, when the skin generator is installed,
"skin image 256x256: 0.05 s/image". The first call (template loading) is not timed.
"""
from __future__ import annotations

import argparse
import time


def seconds_per_call(make, repeat: int) -> float:
    make(0)                                     # warm-up: loads the template, fills caches
    start = time.perf_counter()
    for seed in range(1, repeat + 1):
        make(seed)
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from medseg_edu.data.brain_phantom import make_brain_case

    brain = seconds_per_call(lambda s: make_brain_case(seed=s, shape=(128, 128, 128)), args.repeat)
    print(f"brain case 128^3 x4: {brain:.2f} s/case")
    small = seconds_per_call(lambda s: make_brain_case(seed=s, shape=(64, 64, 64), spacing_mm=(3, 3, 3)),
                             args.repeat)
    print(f"brain case 64^3 x4 (3.5 mm, fast mode): {small:.2f} s/case")
    misaligned = seconds_per_call(lambda s: make_brain_case(seed=s, misalign=(5.0, 5.0)), args.repeat)
    print(f"brain case 128^3 x4 with misalignment: {misaligned:.2f} s/case")
    try:
        from medseg_edu.data.skin_phantom import make_skin_case
    except ImportError:
        print("skin image: skin_phantom not available")
        return
    skin = seconds_per_call(lambda s: make_skin_case(seed=s, size=256), args.repeat)
    print(f"skin image 256x256: {skin:.3f} s/image")


if __name__ == "__main__":
    main()
