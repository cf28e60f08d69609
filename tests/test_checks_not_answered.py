"""Every week's self-checks answer an unanswered exercise with the same helpful message.

A student who runs a self-check before writing the exercise has a solution cell that still says
``raise NotImplementedError()``. Every public ``check_*`` function of every week must then fail with
:func:`medseg_edu.checks.not_answered_message` -- not a bare traceback, and not a different wording per week.
"""
import importlib
import inspect

import pytest

from medseg_edu.checks import not_answered_message, self_check

WEEKS = [f"medseg_edu.checks.week{n}" for n in (*range(1, 7), 8, 9)]


def _public_checks():
    found = []
    for name in WEEKS:
        module = importlib.import_module(name)
        found += [(name, attr, getattr(module, attr)) for attr in module.__all__ if attr.startswith("check_")]
    return found


CHECKS = _public_checks()


def unanswered(*args, **kwargs):
    """What a student's function (or class) does before the exercise is answered."""
    raise NotImplementedError()


def test_every_week_has_checks():
    assert {name for name, _, _ in CHECKS} == set(WEEKS)
    assert len(CHECKS) >= 20


@pytest.mark.parametrize("module, name, check", CHECKS, ids=[f"{m.rsplit('.', 1)[1]}.{n}" for m, n, _ in CHECKS])
def test_unanswered_exercise_gets_the_shared_message(module, name, check):
    students = [p for p in inspect.signature(check).parameters.values()
                if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty]
    assert students, f"{module}.{name} takes no student function"
    with pytest.raises(AssertionError) as info:
        check(*[unanswered] * len(students))
    message = str(info.value)
    exercise = message.split(" ", 1)[0]
    assert exercise.startswith("ex") and exercise[2:].isdigit(), message
    assert message == not_answered_message(exercise)
    # no traceback of the NotImplementedError is attached: the student sees one sentence
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_message_says_what_to_do():
    text = not_answered_message("ex3")
    assert text.startswith("ex3 is not answered yet")
    assert "raise NotImplementedError()" in text and "run that cell" in text


def test_message_needs_an_exercise_name():
    with pytest.raises(TypeError, match="exercise must be a non-empty string"):
        not_answered_message("")


def test_self_check_keeps_other_failures():
    """Only NotImplementedError (also when a check wrapped it in its own AssertionError) is rewritten."""
    @self_check("ex9")
    def check(fn):
        try:
            fn()
        except Exception as err:
            raise AssertionError(f"ex9: your function raised {type(err).__name__}") from err

    def broken():
        raise ValueError("bad")

    with pytest.raises(AssertionError, match="^ex9: your function raised ValueError$"):
        check(broken)
    with pytest.raises(AssertionError, match="^ex9 is not answered yet"):
        check(unanswered)
    assert check.__name__ == "check" and check(lambda: None) is None
