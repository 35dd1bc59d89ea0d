"""Puppet-Master: drag-conditioned video generation of part-level object motion.

Importing this package is cheap: the torch-based classes (``PuppetMasterUNet``,
``PuppetMasterPipeline``) load on first access, so the light modules (``drags``,
``protocol``, ``client``, ``cameras``) stay usable where torch is absent, e.g. inside Blender.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily)
_LAZY = {
    "PuppetMasterUNet": "puppet_master.models.unet",
    "PuppetMasterPipeline": "puppet_master.pipeline",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'puppet_master' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
