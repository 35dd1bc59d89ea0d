"""The add-on's logic in plain Python (no bpy): tested with plain pytest, used by the Blender side."""
