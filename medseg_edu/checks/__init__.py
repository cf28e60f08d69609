"""Student self-checks, one module per week (:mod:`medseg_edu.checks.week1` ... ``week6``).

Every public ``check_*`` function is wrapped by :func:`self_check`, so that an exercise the student has
not answered yet (its solution cell still says ``raise NotImplementedError()``) gets the same helpful
message in every week, :func:`not_answered_message`, instead of a bare traceback.

Every check draws its random inputs from a generator seeded by its ``seed`` argument (an int, never
``None``), so running a check, or grading a notebook, twice gives the same result.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, TypeVar

from medseg_edu.arguments import to_numpy

__all__ = ["not_answered_message", "self_check", "answer_array"]

_F = TypeVar("_F", bound=Callable[..., Any])


def not_answered_message(exercise: str) -> str:
    """The one message every self-check gives when the student's code raises ``NotImplementedError``.

    Shape: exercise name such as ``"ex1"`` -> one sentence.

    Example:
        >>> not_answered_message("ex2").split(":")[0]
        'ex2 is not answered yet'
    """
    if not isinstance(exercise, str) or not exercise:
        raise TypeError(f"exercise must be a non-empty string such as 'ex1', got {exercise!r}")
    return (f"{exercise} is not answered yet: your code still raises NotImplementedError. Replace the line "
            "`raise NotImplementedError()` in the exercise's solution cell with your code, run that cell, "
            "then run this check again.")


def _not_implemented_in_chain(err: Optional[BaseException]) -> bool:
    """True when ``err`` is, or was raised while handling / because of, a ``NotImplementedError``."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, NotImplementedError):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def self_check(exercise: str) -> Callable[[_F], _F]:
    """Decorator for a ``check_*`` function: an unanswered exercise fails with :func:`not_answered_message`.

    The reference code inside a check never raises ``NotImplementedError``, so one raised while the check
    runs (directly, or wrapped in the check's own ``AssertionError``) comes from the student's code.

    Shape: a check function -> the same function, wrapped.
    """
    message = not_answered_message(exercise)

    def decorate(check: _F) -> _F:
        @functools.wraps(check)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return check(*args, **kwargs)
            except Exception as err:
                if _not_implemented_in_chain(err):
                    raise AssertionError(message) from None
                raise

        return wrapper  # type: ignore[return-value]

    return decorate


def answer_array(value: Any, what: str, exercise: str) -> Any:
    """The student's answer as a numpy array (from a numpy array or a torch tensor).

    Anything else fails the check with an ``AssertionError`` that names the exercise and the answer.

    Shape: an array of any shape -> the same shape (torch tensors are detached and copied to the CPU).
    """
    try:
        return to_numpy(value, what)
    except TypeError:
        raise AssertionError(f"{exercise}: {what} should be a numpy array (or torch tensor), "
                             f"got {type(value).__name__}") from None
