"""The top-level API: every re-exported name resolves and is public in its own module."""
import importlib

import pytest

import medseg_edu


@pytest.mark.parametrize("module_name", sorted(medseg_edu._EXPORTS))
def test_reexports_are_public_names_of_their_module(module_name):
    module = importlib.import_module(module_name)
    for name in medseg_edu._EXPORTS[module_name]:
        assert name in module.__all__, f"{name} is not in {module_name}.__all__"
        assert getattr(medseg_edu, name) is getattr(module, name)


def test_names_are_unique_across_modules():
    names = [n for names in medseg_edu._EXPORTS.values() for n in names]
    assert len(names) == len(set(names))


def test_unknown_name_is_a_clear_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'dice'"):
        medseg_edu.dice


def test_every_module_has_all_and_docstring():
    for module_name in medseg_edu._EXPORTS:
        module = importlib.import_module(module_name)
        assert module.__doc__ and module.__doc__.strip()
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and not isinstance(obj, dict):
                assert obj.__doc__, f"{module_name}.{name} has no docstring"


def test_interactive_package_names_are_all_exported():
    import medseg_edu.interactive as interactive

    for name in interactive.__all__:
        assert getattr(medseg_edu, name) is getattr(interactive, name), name
