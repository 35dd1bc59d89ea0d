"""Puppet-Master for Blender: drag parts of an object in the camera view and generate their motion.

As Blender's glTF add-on does it: the Blender-facing modules (``blender/``: operators, panels,
properties, overlay drawing, handlers) stay thin; the logic is in ``core/``, plain Python that never
imports bpy (camera_frame, overlay_geometry, drag_paths, drag_editing, job, results, ...). The
Blender-facing modules load in ``register`` so that the core can be imported (and tested) without bpy.

Each Blender-facing module has a ``classes`` tuple (registered here, in order) and may have
``register``/``unregister`` for the rest (properties on Scene, handlers, draw callbacks).
"""

from __future__ import annotations

_modules: list = []


def register() -> None:
    import bpy

    from .blender import (
        drag_tool,
        generation,
        model_operators,
        operators,
        overlay_draw,
        panels,
        preferences,
        properties,
    )

    _modules[:] = [properties, preferences, operators, model_operators, drag_tool, panels, overlay_draw, generation]
    for module in _modules:
        for cls in getattr(module, "classes", ()):
            bpy.utils.register_class(cls)
        if hasattr(module, "register"):
            module.register()


def unregister() -> None:
    import bpy

    from .blender import runtime

    runtime.shutdown()
    for module in reversed(_modules):
        if hasattr(module, "unregister"):
            module.unregister()
        for cls in reversed(getattr(module, "classes", ())):
            bpy.utils.unregister_class(cls)
    _modules.clear()
