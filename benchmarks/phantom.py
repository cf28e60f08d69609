"""Seconds per generated case of the built-in phantoms (no files written).

Run: python benchmarks/phantom.py [--repeat N]
Prints e.g. "brain case 128^3 x4: 0.41 s wall (0.55 s CPU) per case" and, when the skin generator is
installed, the same per skin image (256x256). CPU seconds help on a busy machine, where wall-clock
time includes waiting for a core. The first call (template loading) is not timed.
"""
from __future__ import annotations

import argparse
import time


class Timing(float):
    """Wall-clock seconds per call; ``cpu`` holds the process CPU seconds per call (all threads)."""
    cpu: float

    def __format__(self, spec: str) -> str:
        return f"{float(self):{spec}} s wall ({self.cpu:{spec}} s CPU)"


def seconds_per_call(make, repeat: int) -> Timing:
    make(0)                                     # warm-up: loads the template, fills caches
    start, start_cpu = time.perf_counter(), time.process_time()
    for seed in range(1, repeat + 1):
        make(seed)
    timing = Timing((time.perf_counter() - start) / repeat)
    timing.cpu = (time.process_time() - start_cpu) / repeat
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from medseg_edu.data.brain_phantom import make_brain_case

    brain = seconds_per_call(lambda s: make_brain_case(seed=s, shape=(128, 128, 128)), args.repeat)
    print(f"brain case 128^3 x4: {brain:.2f} per case")
    small = seconds_per_call(lambda s: make_brain_case(seed=s, shape=(64, 64, 64), spacing_mm=(3, 3, 3)),
                             args.repeat)
    print(f"brain case 64^3 x4 (3.5 mm, fast mode): {small:.2f} per case")
    misaligned = seconds_per_call(lambda s: make_brain_case(seed=s, misalign=(5.0, 5.0)), args.repeat)
    print(f"brain case 128^3 x4 with misalignment: {misaligned:.2f} per case")
    try:
        from medseg_edu.data.skin_phantom import make_skin_case
    except ImportError:
        print("skin image: skin_phantom not available")
        return
    skin = seconds_per_call(lambda s: make_skin_case(seed=s, size=256), args.repeat)
    print(f"skin image 256x256: {skin:.3f} per image")


if __name__ == "__main__":
    main()
