"""The add-on's Blender side: operators, panels, properties, drawing and handlers (thin; the logic is in ``core``)."""
