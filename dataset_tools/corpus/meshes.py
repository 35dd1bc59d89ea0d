"""Mesh building blocks for the corpus families (inside Blender: stdlib, numpy, bpy).

A ``MeshBuilder`` collects boxes, cylinders, ellipsoids and tubes (each with a material slot) in one
object's local frame; ``build`` turns them into a mesh object with box-projected UVs. Shapes return
the range of vertex indices they added, so skinning code can weight each shell with its own bones.

Materials carry a small tileable surface pattern (noise, grain, tiles or speckles) around their
colour, packed into the GLB as the base-colour texture: flat single-colour faces give a point
tracker nothing to follow (on untextured renders every fallback tracker recovered under half of
the exact motion of moving parts), and a part whose face has no texture shows its motion only
at its silhouette.
"""

from __future__ import annotations

import colorsys
import math
import random

import bpy
import numpy as np

_BOX_FACES = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def random_colour(rng: random.Random, *, hue: float | None = None, saturation=(0.35, 0.85), value=(0.35, 0.9)):
    h = rng.random() if hue is None else hue % 1.0
    return colorsys.hsv_to_rgb(h, rng.uniform(*saturation), rng.uniform(*value))


#: side of a material's pattern image, and world units one copy of it covers on a surface
PATTERN_SIZE = 64
PATTERN_TILE = 0.5
PATTERNS = ("noise", "grain", "tiles", "speckles")


def _periodic_noise(np_rng: np.random.Generator, size: int, wavelength: float) -> np.ndarray:
    """Tileable smooth noise of unit standard deviation: white noise low-passed in Fourier space."""
    freq = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2
    spectrum = np.fft.fft2(np_rng.standard_normal((size, size))) * np.exp(-freq * (wavelength ** 2) * 2.0)
    field = np.fft.ifft2(spectrum).real
    return (field - field.mean()) / (field.std() + 1e-8)


def surface_pattern(kind: str, np_rng: np.random.Generator, size: int = PATTERN_SIZE) -> np.ndarray:
    """A tileable ``(size, size)`` pattern in [-1, 1] of ``kind`` (one of PATTERNS)."""
    y, x = np.mgrid[0:size, 0:size] / size
    if kind == "noise":
        field = _periodic_noise(np_rng, size, 10.0) + 0.5 * _periodic_noise(np_rng, size, 4.0)
    elif kind == "grain":  # wood-like: stripes of a whole number of periods, bent by noise
        a, b = int(np_rng.integers(2, 6)), int(np_rng.integers(0, 2))
        field = np.sin(2 * np.pi * (a * x + b * y) + 1.5 * _periodic_noise(np_rng, size, 12.0))
        field = field + 0.3 * _periodic_noise(np_rng, size, 3.0)
    elif kind == "tiles":  # a checker of whole cells per copy, with darker joints
        cells = int(np_rng.choice((4, 8)))
        cx, cy = np.floor(x * cells), np.floor(y * cells)
        field = np.where((cx + cy) % 2 == 0, 1.0, -0.6)
        joint = (np.minimum((x * cells) % 1, (y * cells) % 1) < 0.08)
        field = np.where(joint, -1.5, field) + 0.2 * _periodic_noise(np_rng, size, 3.0)
    elif kind == "speckles":
        spots = _periodic_noise(np_rng, size, 2.5)
        field = np.where(spots > 1.3, -1.8, 0.0) + np.where(spots < -1.6, 1.2, 0.0)
        field = field + 0.4 * _periodic_noise(np_rng, size, 8.0)
    else:
        raise ValueError(f"unknown surface pattern {kind!r}; choose one of {', '.join(PATTERNS)}")
    return np.clip(field / max(1e-8, float(np.abs(field).max())), -1.0, 1.0)


def pattern_pixels(colour, kind: str, np_rng: np.random.Generator, contrast: float,
                   size: int = PATTERN_SIZE) -> np.ndarray:
    """``(size, size, 4)`` RGBA float pixels: ``colour`` brightened and darkened by the pattern."""
    shade = 1.0 + contrast * surface_pattern(kind, np_rng, size)
    rgb = np.clip(np.asarray(colour, dtype=np.float64)[None, None, :3] * shade[..., None], 0.0, 1.0)
    return np.concatenate([rgb, np.ones((size, size, 1))], axis=-1)


def _pattern_texture(material: bpy.types.Material, bsdf, rng: random.Random, colour) -> dict:
    kind = rng.choice(PATTERNS)
    contrast = rng.uniform(0.25, 0.5)
    np_rng = np.random.default_rng(rng.getrandbits(63))
    image = bpy.data.images.new(f"{material.name}_pattern", PATTERN_SIZE, PATTERN_SIZE, alpha=True)
    image.pixels.foreach_set(pattern_pixels(colour, kind, np_rng, contrast).astype(np.float32).ravel())
    image.pack()
    node = material.node_tree.nodes.new("ShaderNodeTexImage")
    node.image = image
    material.node_tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    material.node_tree.nodes.active = node  # what Workbench's texture colour mode shows
    return {"pattern": kind, "contrast": contrast}


def make_material(name: str, rng: random.Random, colour=None, *, metallic: float | None = None,
                  pattern: bool = True) -> bpy.types.Material:
    """A Principled BSDF material (exported to glTF as PBR) with a random colour, roughness, metalness
    and, unless ``pattern`` is false, a surface pattern texture around that colour."""
    colour = random_colour(rng) if colour is None else colour
    roughness = rng.uniform(0.25, 0.95)
    metallic = (rng.uniform(0.4, 0.9) if rng.random() < 0.15 else 0.0) if metallic is None else metallic
    material = bpy.data.materials.new(name)
    material.diffuse_color = (*colour, 1.0)  # what Workbench shows
    material.roughness = roughness
    material.metallic = metallic
    material.use_nodes = True
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Base Color"].default_value = (*colour, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    if pattern:
        material["pm_pattern"] = _pattern_texture(material, bsdf, rng, colour)["pattern"]
    return material


def material_record(material: bpy.types.Material) -> dict:
    return {"name": material.name, "colour": [round(c, 4) for c in material.diffuse_color[:3]],
            "roughness": round(material.roughness, 4), "metallic": round(material.metallic, 4),
            "pattern": material.get("pm_pattern")}


def box_projected_uvs(verts: np.ndarray, faces: list[tuple[int, ...]], tile: float = PATTERN_TILE) -> np.ndarray:
    """Per-loop UVs ``(sum of face sizes, 2)``: each face takes the two coordinates across its
    dominant normal axis, ``tile`` world units per copy of the texture."""
    uvs = []
    for face in faces:
        pts = verts[list(face)]
        normal = np.cross(pts[1] - pts[0], pts[2] - pts[0])
        if len(pts) > 3:
            normal = normal + np.cross(pts[2] - pts[0], pts[3] - pts[0])
        axis = int(np.argmax(np.abs(normal)))
        across = [a for a in range(3) if a != axis]
        uvs.append(pts[:, across] / tile)
    return np.concatenate(uvs) if uvs else np.zeros((0, 2))


def _frame(axis) -> np.ndarray:
    """Two unit vectors orthogonal to ``axis`` (and to each other)."""
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    helper = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(axis, u)


class MeshBuilder:
    def __init__(self) -> None:
        self.verts: list[tuple[float, float, float]] = []
        self.faces: list[tuple[int, ...]] = []
        self.face_materials: list[int] = []

    def _add(self, verts, faces, material: int) -> range:
        base = len(self.verts)
        self.verts += [tuple(float(c) for c in v) for v in verts]
        self.faces += [tuple(base + i for i in f) for f in faces]
        self.face_materials += [material] * len(faces)
        return range(base, len(self.verts))

    def box(self, lo, hi, material: int = 0) -> range:
        verts = [(x, y, z) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        return self._add(verts, _BOX_FACES, material)

    def tube(self, points, radii, material: int = 0, segments: int = 12, caps: bool = True) -> range:
        """A tube through ``points`` (n, 3) with radius ``radii[i]`` at each ring; capped ends."""
        points = np.asarray(points, dtype=float)
        radii = np.broadcast_to(np.asarray(radii, dtype=float), (len(points),))
        verts, faces = [], []
        u_prev = None
        for i, p in enumerate(points):
            direction = points[min(i + 1, len(points) - 1)] - points[max(i - 1, 0)]
            u, v = _frame(direction)
            if u_prev is not None and np.dot(u, u_prev) < 0:  # keep the rings from twisting
                u, v = -u, -v
            u_prev = u
            for s in range(segments):
                a = 2 * math.pi * s / segments
                verts.append(p + radii[i] * (math.cos(a) * u + math.sin(a) * v))
        for i in range(len(points) - 1):
            a, b = i * segments, (i + 1) * segments
            faces += [(a + s, a + (s + 1) % segments, b + (s + 1) % segments, b + s) for s in range(segments)]
        if caps:
            n = len(verts)
            verts += [points[0], points[-1]]
            last = (len(points) - 1) * segments
            faces += [(n, (s + 1) % segments, s) for s in range(segments)]
            faces += [(n + 1, last + s, last + (s + 1) % segments) for s in range(segments)]
        return self._add(verts, faces, material)

    def cylinder(self, base, top, radius: float, material: int = 0, segments: int = 16, top_radius=None) -> range:
        top_radius = radius if top_radius is None else top_radius
        return self.tube([base, top], [radius, top_radius], material, segments)

    def ellipsoid(self, center, radii, material: int = 0, rings: int = 10, segments: int = 16) -> range:
        center, radii = np.asarray(center, dtype=float), np.asarray(radii, dtype=float)
        verts = [center + radii * (0.0, 0.0, 1.0)]
        for r in range(1, rings):
            theta = math.pi * r / rings
            for s in range(segments):
                phi = 2 * math.pi * s / segments
                unit = (math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta))
                verts.append(center + radii * unit)
        verts.append(center - radii * (0.0, 0.0, 1.0))
        faces = [(0, 1 + s, 1 + (s + 1) % segments) for s in range(segments)]
        for r in range(rings - 2):
            a, b = 1 + r * segments, 1 + (r + 1) * segments
            faces += [(a + s, b + s, b + (s + 1) % segments, a + (s + 1) % segments) for s in range(segments)]
        last, base = len(verts) - 1, 1 + (rings - 2) * segments
        faces += [(base + (s + 1) % segments, base + s, last) for s in range(segments)]
        return self._add(verts, faces, material)

    def build(self, name: str, materials: list, *, location=(0.0, 0.0, 0.0), parent=None) -> bpy.types.Object:
        mesh = bpy.data.meshes.new(name)
        mesh.from_pydata(self.verts, [], self.faces)
        for material in materials:
            mesh.materials.append(material)
        mesh.polygons.foreach_set("material_index", self.face_materials)
        uv_layer = mesh.uv_layers.new(name="UVMap")
        uv_layer.data.foreach_set("uv", box_projected_uvs(np.asarray(self.verts), self.faces).astype(np.float32).ravel())
        mesh.update()
        obj = bpy.data.objects.new(name, mesh)
        bpy.context.scene.collection.objects.link(obj)
        obj.parent = parent  # matrix_parent_inverse stays identity: location is in the parent's frame
        obj.location = location
        return obj


def hollow_box(builder: MeshBuilder, lo, hi, wall: float, material: int = 0, *, open_side: str = "top") -> None:
    """Five walls of a box, open at ``open_side`` ('top' or 'front' (-Y)).

    The walls never overlap: coincident faces would block Cycles' shadow rays and render black.
    """
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    builder.box((x0, y0, z0), (x1, y1, z0 + wall), material)  # bottom
    builder.box((x0, y1 - wall, z0 + wall), (x1, y1, z1), material)  # back
    if open_side == "top":
        builder.box((x0, y0, z0 + wall), (x1, y0 + wall, z1), material)  # front
        side_y, side_top = (y0 + wall, y1 - wall), z1
    else:
        builder.box((x0, y0, z1 - wall), (x1, y1 - wall, z1), material)  # top
        side_y, side_top = (y0, y1 - wall), z1 - wall
    builder.box((x0, side_y[0], z0 + wall), (x0 + wall, side_y[1], side_top), material)  # left
    builder.box((x1 - wall, side_y[0], z0 + wall), (x1, side_y[1], side_top), material)  # right
