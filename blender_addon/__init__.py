"""Puppet-Master for Blender: drag parts of an object in the camera view and generate their motion.

Blender-facing modules (operators, panels, properties, overlay drawing) stay thin; the logic is in
plain-Python modules that never import bpy (camera_frame, overlay_geometry, job, results,
reference_image, backend_process). The Blender-facing modules load in ``register`` so that the
plain modules can be imported (and tested) without bpy.

Each Blender-facing module has a ``classes`` tuple (registered here, in order) and may have
``register``/``unregister`` for the rest (properties on Scene, handlers, draw callbacks).
"""

from __future__ import annotations

_modules: list = []


def register() -> None:
    import bpy

    from . import (
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

    from . import runtime

    runtime.shutdown()
    for module in reversed(_modules):
        if hasattr(module, "unregister"):
            module.unregister()
        for cls in reversed(getattr(module, "classes", ())):
            bpy.utils.unregister_class(cls)
    _modules.clear()
