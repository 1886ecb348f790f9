"""Measure the peak bytes of live CPU tensor storages, for checking memory estimates against reality."""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode


class LiveTensorBytes(TorchDispatchMode):
    """Every storage an op creates (forward, backward, optimizer, generate) counts until it is freed.

    ``roots`` are tensors alive before the mode starts (parameters, gradients, optimizer states); they are
    counted from the start. ``peak`` is the largest sum of live storage bytes seen. Views share their
    base's storage and are counted once.
    """

    def __init__(self, roots: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        for tensor in roots:
            self._add(tensor)
        self.start = self.current

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def _add(self, tensor: object) -> None:
        if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu":
            return
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self.live:
            return
        self.live[key] = storage.nbytes()
        self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in pytree.tree_leaves(out):
            self._add(leaf)
        return out
