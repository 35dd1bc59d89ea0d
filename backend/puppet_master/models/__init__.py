"""The Puppet-Master U-Net and its parts (torch + diffusers).

``PuppetMasterUNet`` (unet.py), ``encode_drags`` (drag_encoding.py), the all-to-first attention
processors (attention.py), the drag modules (drag_modules.py, blocks.py) and weight loading
(loading.py). Names are imported lazily so ``import puppet_master.models`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PuppetMasterUNet": "puppet_master.models.unet",
    "PuppetMasterUNetOutput": "puppet_master.models.unet",
    "encode_drags": "puppet_master.models.drag_encoding",
    "AllToFirstAttnProcessor": "puppet_master.models.attention",
    "AllToFirstReferenceAttnProcessor": "puppet_master.models.attention",
    "PlainAttnProcessor": "puppet_master.models.attention",
    "load_released_state_dict": "puppet_master.models.loading",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'puppet_master.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
