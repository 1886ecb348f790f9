"""Run the doctest examples of the eval protocol modules (normalisation rules shown in their docstrings)."""

import doctest
import importlib

import pytest

MODULES = ["eval.protocols.latex_value", "eval.protocols.mathvision", "eval.protocols.mathvista",
           "eval.protocols.gsm8k", "eval.protocols.mathverse", "eval.protocols.wemath"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
