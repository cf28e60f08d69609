"""The model card's sections and numbers on a small hand-made evaluation table."""
import numpy as np
import pandas as pd
import pytest

from medseg_edu.model_card import group_metrics, markdown_table, model_card_markdown


def _table():
    return pd.DataFrame({
        "case_id": [f"c{i}" for i in range(8)],
        "site": ["A"] * 4 + ["B"] * 4,
        "sex": ["F", "M"] * 4,
        "dice": [0.9, 0.9, 0.9, 0.9, 0.6, 0.2, 0.6, np.nan],
        "flags": ["", "", "", "", "unusual_intensity", "small_volume, unusual_intensity", "", "empty"],
    })


def _card(**options):
    return model_card_markdown(_table(), model_name="Phantom U-Net",
                               intended_use="Teaching only; not for clinical use.",
                               data_description="Synthetic brain MRI phantoms from two sites.",
                               subgroup_columns=["sex"], n_resamples=500, **options)


def _section(card, title):
    """The text under a '## title' heading, up to the next '## ' heading."""
    start = card.index(f"## {title}\n")
    end = card.find("\n## ", start + 3)
    return card[start:] if end < 0 else card[start:end]


def test_card_has_every_section_in_order():
    card = _card()
    titles = ["# Model card: Phantom U-Net", "## Intended use", "## Data", "## Performance", "### By site",
              "### By sex", "## Quality control", "## Known failure modes", "## Limitations"]
    positions = [card.index(t + "\n") for t in titles]
    assert positions == sorted(positions)
    assert "Teaching only; not for clinical use." in _section(card, "Intended use")


def test_data_section_counts_cases_per_site():
    data = _section(_card(), "Data")
    assert "Evaluated on 8 cases from 2 sites." in data
    assert "| A | 4 |" in data and "| B | 4 |" in data


def test_performance_numbers_by_hand():
    performance = _section(_card(), "Performance")
    # 7 defined values: (4 * 0.9 + 0.6 + 0.2 + 0.6) / 7 = 5.0 / 7 = 0.714
    assert "Mean dice: **0.714**" in performance
    assert "left out: 1)" in performance
    # site A: four times 0.9, so every resample has mean 0.9: the CI is 0.9 to 0.9
    assert "| A | 4 | 0.900 | 0.900 | 0.900 | 0 |" in performance
    # site B: (0.6 + 0.2 + 0.6) / 3 = 0.467, one undefined case
    row_b = next(line for line in performance.splitlines() if line.startswith("| B |"))
    cells = row_b.strip("|").split("|")
    assert [c.strip() for c in cells[:3]] == ["B", "3", "0.467"] and cells[5].strip() == "1"
    assert 0.2 <= float(cells[3]) <= 0.467 <= float(cells[4]) <= 0.6


def test_quality_control_section_by_hand():
    qc = _section(_card(), "Quality control")
    assert "3 of 8 cases raised at least one quality-control flag." in qc
    # unusual_intensity: c4 (0.6) and c5 (0.2) -> 0.4; clean cases c0-c3, c6 -> (3.6 + 0.6) / 5 = 0.84
    assert "| unusual_intensity | 2 | 0.400 | 0.840 |" in qc
    assert "| empty | 1 | n/a | 0.840 |" in qc  # its only case has an undefined Dice


def test_failure_modes_by_hand():
    failures = _section(_card(), "Known failure modes")
    assert "Cases with dice below 0.5: 1 of 8: c5." in failures
    assert "site = B" in failures           # its whole CI (<= 0.6) lies below the overall 0.714
    assert "site = A" not in failures
    assert "Flag associated with lower dice: unusual_intensity" in failures
    assert "Flag associated with lower dice: empty" not in failures  # no defined Dice to compare


def test_optional_columns_can_be_left_out():
    table = _table().drop(columns=["site", "flags", "case_id"])
    card = model_card_markdown(table, model_name="m", intended_use="u", data_description="d", site_column=None,
                      case_column=None, flag_column=None, n_resamples=200)
    assert "### By site" not in card and "## Quality control" not in card
    assert "Evaluated on 8 cases." in card


def test_group_metrics_drops_undefined_values_and_counts_them():
    result = group_metrics(_table(), by="site", n_resamples=200)
    assert list(result["site"]) == ["A", "B"]
    assert list(result["n"]) == [4, 3] and list(result["n_undefined"]) == [0, 1]
    np.testing.assert_allclose(result["mean"], [0.9, 1.4 / 3], atol=1e-12)


def test_markdown_table_by_hand():
    text = markdown_table(pd.DataFrame({"a|b": ["x|y"], "v": [np.nan], "w": [1.23456]}), digits=2)
    assert text.splitlines() == ["| a|b | v | w |", "| --- | --- | --- |", "| x\\|y | n/a | 1.23 |"]


def test_model_card_errors():
    with pytest.raises(ValueError, match=r"table has no column\(s\) \['sex'\]"):
        model_card_markdown(_table().drop(columns=["sex"]), model_name="m", intended_use="u", data_description="d",
                   subgroup_columns=["sex"])
    with pytest.raises(ValueError, match="intended_use must be a non-empty string"):
        model_card_markdown(_table(), model_name="m", intended_use=" ", data_description="d")
    with pytest.raises(TypeError, match="table must be a pandas DataFrame"):
        model_card_markdown([1, 2], model_name="m", intended_use="u", data_description="d")
    with pytest.raises(ValueError, match="has no defined"):
        model_card_markdown(_table().assign(dice=np.nan), model_name="m", intended_use="u", data_description="d")
