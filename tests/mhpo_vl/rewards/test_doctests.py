"""Run the doctest examples in every module of mhpo_vl.rewards."""

import doctest
import importlib
import pkgutil

import pytest

import mhpo_vl.rewards as rewards

MODULES = [
    m.name
    for m in pkgutil.iter_modules(rewards.__path__, "mhpo_vl.rewards.")
    if not m.name.endswith("_mv_worker")
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
