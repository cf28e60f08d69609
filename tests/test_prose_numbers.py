"""No number in the prose of any week that a run produces: such numbers are printed by code cells.

A Dice, a threshold or a gap copied from one run into a Markdown cell is wrong on the next run (another
seed, another thread count, another machine). So every decimal number (``0.93``, ``.5``, ``2.47``) and
every percentage (``95 %``) in a Markdown cell of every course notebook (weeks 1 to 9) must be on that
notebook's allow-list below: a constant the text legitimately states (a parameter the code also uses, a
threshold the lesson chooses, a hand-worked example, a published figure, a software version, a unit of the
data), each with its reason. Ranges seen over seeds are not allowed either: weeks 7 and 8 stated some
("seeds 0-2: 0.73-0.78") and both had gone stale when the notebooks were run again after later changes.
The prose says what held in every run in words and the code cells print this run's numbers.
Web addresses, DOIs and arXiv numbers are not numbers of the lesson and are skipped. Integers are not
checked (counts of images, epochs and weeks are parameters of the notebook). The header cell tagged
``run-time`` is skipped: it is written from course/RUNTIMES.md by ``scripts/run_course.py --headers`` and
checked against that table by tests/test_run_course.py.
"""
import re
from pathlib import Path

import nbformat
import pytest

COURSE = Path(__file__).resolve().parents[1] / "course"

NOT_NUMBERS = re.compile(r"https?://\S+|doi:\S+|\b10\.\d{4,}/\S+|arXiv:\S+|\b\d{4}\.\d{4,5}\b")
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?\s?%|\d*\.\d+)(?![\w.]*\d)")

ALLOWED = {
    "week1_registration": {
        "1.75": "voxel spacing in mm of the default mode's 128^3 volumes (SPACING; the built-in data's spacing)",
        "0.05": "stopping step of the pattern search the lesson chooses (register_2d stops when step.max() < 0.05)",
    },
    "week2_slices_vs_patches": {
        "5%": "the minimum tumour fraction of the demo's patches (min_tumour_fraction=0.05)",
        "2.5": "the name of the '2.5D' model family (a few adjacent slices as channels), not a measurement",
    },
    "week3_unet": {
        "0.01": "negative slope of nn.LeakyReLU(0.01) in the conv block, the code's argument (PyTorch's default)",
    },
    "week4_losses_metrics": {
        # the 3 x 3 worked example of the soft Dice loss (probabilities chosen by the text, arithmetic by hand)
        "0.09": "worked example: 0.3^2", "0.16": "worked example: 0.4^2", "0.25": "worked example: 0.5^2",
        "0.36": "worked example: 0.6^2", "0.64": "worked example: 0.8^2", "0.81": "worked example: 0.9^2",
        "0.8": "worked example probability", "0.9": "worked example probability (and default-mode Dice floor "
        "the assert of the loss comparison checks)",
        "2.2": "worked example: sum p g", "2.47": "worked example: sum p^2", "4.4": "worked example: 2 sum p g",
        "5.47": "worked example: denominator", "0.196": "worked example: 1 - 4.4/5.47",
        "3.9": "worked example, plain form: sum p", "6.9": "worked example: plain denominator",
        "0.362": "worked example: 1 - 4.4/6.9",
        "0.01": "the smoothing example's made-up prediction (all probabilities 0.01 on an empty mask)",
        "1.0": "the value the exercises specify for two empty masks / a perfect score (definition)",
        "0.5": "the habitual threshold the lesson discusses",
        "1%": "general statement: small structures cover well under 1 % of the voxels",
        "2.5": "the tiny-lesion radius in pixels (parameter of the example)",
        "0.5%": "the tiny lesion's share of the image, pi 2.5^2 / 64^2, by construction",
        "99.5%": "accuracy of an all-background answer on the tiny lesion, 1 - 0.5 %, by construction",
        "0.02": "default-mode tolerance the loss-comparison assert checks (all four within 0.02)",
        "0.4": "spacing example: 400 voxels at 1 mm^3 = 0.4 ml (hand-worked)",
        "2.0": "spacing example: 400 voxels at 5 mm^3 = 2.0 ml (hand-worked)",
        "0.1": "spacing example: 100 voxels at 1 mm^3 (hand-worked)",
        "25%": "spacing example: relative volume error 100 / 400 (hand-worked)",
        "95%": "the sensitivity target the lesson chooses (TARGET_SENSITIVITY)",
    },
    "week5_external_validation": {
        "1.5": "field strength of site B's scanner (1.5 T), a property of the phantom site",
        "1.96": "the normal quantile of a 95 % interval (the wrong method the exercise warns against)",
        "2.5": "the lower percentile of a 95 % interval", "97.5": "the upper percentile of a 95 % interval",
        "99.5": "upper clipping percentile of the intensity normalisation, a parameter",
        "0.05": "tolerance of the default-mode harmonisation assert",
        "0.2": "example threshold probability p_t of the net-benefit formula (also used by the code)",
        "0.25": "odds at p_t = 0.2, hand-worked: 0.2 / 0.8",
        "40%": "the share of patients the decision volume is chosen to refer (60th percentile of the development set)",
    },
    "week6_subgroup_bias": {
        "2.5": "the lower percentile of a 95 % interval", "97.5": "the upper percentile of a 95 % interval",
        "95%": "the confidence level of every interval", "0.95": "the default confidence argument",
        "1.96": "the normal quantile in the sample-size formula",
        "1.4": "the FLAIR threshold factor of the crude brain 'model', a parameter (flair_threshold)",
        "0.05": "tolerance of the default-mode inter-rater assert",
    },
    "week7_self_configuring": {
        "5%": "nnU-Net's batch-size cap: one batch covers at most 5 % of the training set's voxels (batch_size)",
        "0.05": "the same cap as a fraction, round(0.05 * dataset_voxels / prod(patch_size)) in batch_size",
        "0.6": "typical prostate MRI in-plane spacing in mm, the textbook example of the anisotropic-axis rule",
        "3.6": "typical prostate MRI slice thickness in mm, the same example",
        "0.5": "nnU-Net's lower CT clipping percentile (ct_stats['percentile_00_5'])",
        "99.5": "nnU-Net's upper CT clipping percentile (ct_stats['percentile_99_5'])",
        "1.75": "voxel spacing in mm of the built-in data set (builtin_brain) and of nnunetv2's 3d_fullres plan for it",
    },
    "week8_promptable": {
        "0.85": "the Dice target of NoC@85 (target_dice=0.85), a definition of the literature",
        "0.90": "the Dice target of NoC@90 (the levels 0.85, 0.90 of the NoC cell), a definition of the literature",
        "0.61": "value of a click's Gaussian disk at one sigma_px, exp(-1/2), by construction (click_map)",
        "7.7": "software version: the ipywidgets version Colab ships",
        "1.5": "published figure: MedSAM was fine-tuned on 1.5 million medical image-mask pairs (Ma et al. 2024)",
    },
    "week9_clinic": {
        "0.95": "the Dice tolerance of the RT-STRUCT round trip (assert rt_dice >= 0.95) and performance_rows' "
        "default confidence argument (confidence=0.95)",
        "1.5": "field strength of site B's scanner (1.5 T), a property of the phantom site",
        "0.1": "dropout probability of the Monte-Carlo dropout model (UNet(..., dropout=0.1)), a parameter",
        "2.5": "lower percentile of the QC reference ranges (fit_qc_reference's low_percentile; np.percentile in "
        "exercise 2)",
        "97.5": "upper percentile of the QC reference ranges (fit_qc_reference's high_percentile; np.percentile in "
        "exercise 2)",
    },
}


def numbers_in(text: str) -> list[str]:
    """Decimal numbers and percentages of a Markdown text, spaces removed ('95 %' -> '95%')."""
    return [re.sub(r"\s", "", m.group(1)) for m in NUMBER.finditer(NOT_NUMBERS.sub(" ", text))]


def unexplained_numbers(nb, allowed: dict) -> list[tuple[str, str]]:
    """(cell id, number) for every number of a Markdown cell that is not on the allow-list."""
    return [(cell.get("id", "?"), number) for cell in nb.cells if cell.cell_type == "markdown"
            and "run-time" not in cell.metadata.get("tags", [])
            for number in numbers_in(cell.source) if number not in allowed]


def test_every_week_is_checked():
    assert sorted(ALLOWED) == sorted(path.stem for path in COURSE.glob("week*.ipynb"))


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_prose_states_no_number_of_one_run(name):
    nb = nbformat.read(COURSE / f"{name}.ipynb", as_version=4)
    bad = unexplained_numbers(nb, ALLOWED[name])
    assert not bad, (f"{name}: numbers in Markdown cells that are not on the allow-list of tests/"
                     f"test_prose_numbers.py: {bad}. A number a run produces belongs in a code cell's output.")


def test_allow_lists_give_a_reason_and_are_used():
    for name, allowed in ALLOWED.items():
        nb = nbformat.read(COURSE / f"{name}.ipynb", as_version=4)
        used = {n for cell in nb.cells if cell.cell_type == "markdown" for n in numbers_in(cell.source)}
        assert all(reason.strip() for reason in allowed.values()), name
        assert set(allowed) <= used, f"{name}: allow-listed but no longer in the text: {set(allowed) - used}"


def test_checker_finds_a_planted_run_number():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("In a full run we measured a mean Dice of 0.964 and a gap of .056, "
                                              "p = 0.0005; 12 % of images failed."),
                nbformat.v4.new_markdown_cell("The 95 % interval (2.5th to 97.5th percentile); see "
                                              "https://doi.org/10.1038/s41592-023-02151-z and arXiv 1606.04797."),
                nbformat.v4.new_code_cell("print(0.964)")]            # numbers in code cells are fine
    for index, cell in enumerate(nb.cells):
        cell.id = f"c{index}"
    allowed = {"95%": "confidence level", "2.5": "percentile", "97.5": "percentile"}
    assert unexplained_numbers(nb, allowed) == [("c0", "0.964"), ("c0", ".056"), ("c0", "0.0005"), ("c0", "12%")]
    assert numbers_in("version 1.2.3, week 4, (0.5, 0.8)") == ["0.5", "0.8"]
