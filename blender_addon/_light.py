"""The project's light shared modules (drags, protocol, client), wherever they are.

The built extension carries byte-identical copies in ``vendor/puppet_master_light`` (see
``build.py``); a development checkout without that folder uses the installed ``puppet_master``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

VENDORED_PACKAGE = __package__ + ".vendor.puppet_master_light"


def vendored() -> bool:
    """True when the light modules come from the copy inside the extension."""
    try:
        importlib.import_module(VENDORED_PACKAGE)
    except ModuleNotFoundError:
        return False
    return True


def light_module(name: str) -> ModuleType:
    """Import light module ``name`` (``"drags"``, ``"client"``, ...) from the vendored copy or the package."""
    if vendored():
        return importlib.import_module(f"{VENDORED_PACKAGE}.{name}")
    return importlib.import_module(f"puppet_master.{name}")
