"""Procedural corpus of animated assets for training: cabinets, boxes, lamps, creatures.

``families`` (no bpy) lists the families; ``generate`` (bpy) builds and exports one asset; one
module per family (``cabinet``, ``box``, ``lamp``, ``creature``, bpy) builds its geometry, rig and
clips; ``meshes`` and ``motion`` are the shared bpy building blocks. ``dataset_tools/build_corpus.py``
drives it all. See docs/corpus.md.
"""
