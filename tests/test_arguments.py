"""Tests for medseg_edu.arguments.check_activation: the one meaning of ``activation``."""
import pytest

from medseg_edu.arguments import ACTIVATIONS, check_activation


@pytest.mark.parametrize("activation,channels,exclusive", [
    ("softmax", 2, True), ("softmax", 4, True),      # exclusive classes, channel 0 background
    ("sigmoid", 1, False), ("sigmoid", 3, False),    # independent channels (e.g. WT/TC/ET)
    ("none", 3, True),                               # class probabilities, read as softmax's
    ("none", 1, False),                              # one foreground probability, read as sigmoid's
])
def test_check_activation_says_whether_channels_are_exclusive(activation, channels, exclusive):
    assert check_activation(activation, channels) is exclusive


def test_check_activation_errors():
    assert ACTIVATIONS == ("softmax", "sigmoid", "none")
    with pytest.raises(ValueError, match="activation='softmax' needs at least 2 channels .*got 1"):
        check_activation("softmax", 1)
    with pytest.raises(ValueError, match=r"activation must be one of \['softmax', 'sigmoid'\], got 'none'"):
        check_activation("none", 2, choices=("softmax", "sigmoid"))
    with pytest.raises(ValueError, match="activation must be one of"):
        check_activation("relu", 2)
