"""The registry of corpus families (no bpy here: the build CLI lists and checks families with it)."""

from __future__ import annotations

import importlib

#: family name -> module (under dataset_tools.corpus) with ``build(rng, frames, max_clips) -> dict``
FAMILIES = {
    "cabinet": "cabinet",
    "box": "box",
    "lamp": "lamp",
    "creature": "creature",
}


def family_module(name: str):
    """The bpy-side module that builds ``name`` (imports bpy)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown corpus family {name!r}; choose from {', '.join(FAMILIES)}")
    return importlib.import_module(f"dataset_tools.corpus.{FAMILIES[name]}")


def asset_id(family: str, seed: int) -> str:
    return f"{family}_{seed:06d}"
