"""The project's light shared modules (drags, protocol, client), wherever they are.

The built extension carries byte-identical copies in ``vendor/puppet_master_light`` (see
``build.py``); a development checkout without that folder uses the installed ``puppet_master``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: the extension's root package (``core``'s parent), where build_extension.py puts ``vendor/``
ADDON_PACKAGE = __package__.rpartition(".")[0]
VENDORED_PACKAGE = ADDON_PACKAGE + ".vendor.puppet_master_light"


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
