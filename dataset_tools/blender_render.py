"""Engine, light and image output for render.py (inside Blender: stdlib, numpy, bpy)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
from mathutils import Vector

ENGINES = {"cycles": "CYCLES", "workbench": "BLENDER_WORKBENCH", "eevee": "BLENDER_EEVEE"}
GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "METAL", "ONEAPI")


@dataclass(frozen=True)
class RenderSettings:
    engine: str = "cycles"
    device: str = "CPU"
    samples: int = 8
    denoise: bool = True
    #: OpenImageDenoise quality: FAST (default, ~10x cheaper on a CPU), BALANCED or HIGH
    denoise_quality: str = "FAST"
    resolution: int = 256
    #: render at resolution * supersample and downscale (the authors' 512 -> 256 uses 2)
    supersample: int = 1
    #: keep the straight colour with a transparent background instead of compositing on white
    rgba: bool = False
    #: strength of the uniform white environment (1.0 alone: a diffuse surface shows its albedo)
    light_strength: float = 0.7
    #: a soft sun from above the front-left for shape cues (W/m^2; 0 = environment light only)
    key_light: float = 1.0


def configure(settings: RenderSettings) -> None:
    """Engine, sampling, colour management, white world light and transparent film."""
    scene = bpy.context.scene
    if settings.engine not in ENGINES:
        raise ValueError(f"unknown engine {settings.engine!r}; choose one of {', '.join(ENGINES)}")
    scene.render.engine = ENGINES[settings.engine]
    size = settings.resolution * settings.supersample
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.render.film_transparent = True
    scene.render.use_persistent_data = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "8"
    with contextlib.suppress(TypeError):  # an odd colour-management configuration: keep the default
        scene.view_settings.view_transform = "Standard"
    _world_light(scene, settings.light_strength)
    _key_light(scene, settings.key_light)
    if settings.engine == "cycles":
        _configure_cycles(scene, settings)
    elif settings.engine == "workbench":
        shading = scene.display.shading
        shading.light = "STUDIO"
        shading.color_type = "TEXTURE"
        scene.display.render_aa = "8"
    else:
        scene.eevee.taa_render_samples = max(1, settings.samples)


def effective_device(settings: RenderSettings) -> str | None:
    """The Cycles device actually used (GPU requests fall back to CPU without a GPU); None otherwise."""
    return bpy.context.scene.cycles.device if settings.engine == "cycles" else None


def _world_light(scene, strength: float) -> None:
    """A uniform white environment: soft, even light from every direction."""
    world = bpy.data.worlds.get("PM_world") or bpy.data.worlds.new("PM_world")
    if not world.use_nodes:
        world.use_nodes = True
    background = next((n for n in world.node_tree.nodes if n.type == "BACKGROUND"), None)
    if background is None:
        background = world.node_tree.nodes.new("ShaderNodeBackground")
        output = next((n for n in world.node_tree.nodes if n.type == "OUTPUT_WORLD"), None)
        output = output or world.node_tree.nodes.new("ShaderNodeOutputWorld")
        world.node_tree.links.new(background.outputs[0], output.inputs[0])
    background.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    background.inputs["Strength"].default_value = strength
    world.color = (1.0, 1.0, 1.0)
    scene.world = world


def _key_light(scene, strength: float) -> None:
    """A sun fixed in the world (elevation 60°, azimuth -30°) with a wide angle: soft shadows."""
    obj = bpy.data.objects.get("PM_key_light")
    if strength <= 0:
        if obj is not None:
            bpy.data.objects.remove(obj)
        return
    if obj is None:
        light = bpy.data.lights.new("PM_key_light", "SUN")
        obj = bpy.data.objects.new("PM_key_light", light)
        scene.collection.objects.link(obj)
    obj.data.energy = strength
    obj.data.angle = math.radians(30.0)
    azimuth, elevation = math.radians(-30.0), math.radians(60.0)
    towards_light = Vector((math.sin(azimuth) * math.cos(elevation), -math.cos(azimuth) * math.cos(elevation),
                            math.sin(elevation)))
    obj.rotation_mode = "QUATERNION"
    obj.rotation_quaternion = (-towards_light).to_track_quat("-Z", "Y")


def _configure_cycles(scene, settings: RenderSettings) -> None:
    cycles = scene.cycles
    cycles.samples = max(1, settings.samples)
    cycles.use_adaptive_sampling = settings.samples > 16
    cycles.use_denoising = settings.denoise
    if settings.denoise:
        cycles.denoiser = "OPENIMAGEDENOISE"
        cycles.denoising_quality = settings.denoise_quality
        cycles.denoising_prefilter = "NONE" if settings.denoise_quality == "FAST" else "ACCURATE"
    # few bounces: diffuse objects under an even sky need little more than ambient occlusion
    cycles.max_bounces = 4
    cycles.diffuse_bounces = 2
    cycles.glossy_bounces = 2
    cycles.transmission_bounces = 2
    cycles.transparent_max_bounces = 4
    cycles.volume_bounces = 0
    cycles.caustics_reflective = cycles.caustics_refractive = False
    cycles.device = "CPU"
    if settings.device.upper() == "GPU":
        cycles.device = "GPU" if _enable_gpu() else "CPU"


def _enable_gpu() -> bool:
    """Turn on the first GPU backend that has devices; False (stay on CPU) when there is none."""
    try:
        prefs = bpy.context.preferences.addons["cycles"].preferences
    except KeyError:
        return False
    for backend in GPU_BACKENDS:
        try:
            prefs.compute_device_type = backend
        except TypeError:
            continue
        prefs.get_devices()
        devices = [d for d in prefs.devices if d.type == backend]
        if devices:
            for device in prefs.devices:
                device.use = device.type == backend
            return True
    return False


def read_png(path: Path) -> np.ndarray:
    """``(H, W, 4)`` float32 in [0, 1], top row first, via Blender's image loader."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1]


def write_png(path: Path, rgba: np.ndarray) -> None:
    """Save ``(H, W, 4)`` floats in [0, 1] (top row first) as an 8-bit RGBA PNG."""
    height, width = rgba.shape[:2]
    image = bpy.data.images.new("PM_write", width, height, alpha=True)
    try:
        image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1], dtype=np.float32).ravel())
        image.filepath_raw = str(path)
        image.file_format = "PNG"
        image.save()
    finally:
        bpy.data.images.remove(image)


def finish_image(rgba: np.ndarray, settings: RenderSettings) -> np.ndarray:
    """Downscale a supersampled render and, unless ``rgba``, composite its colour on white.

    The alpha channel always stays: it is the object's silhouette.
    """
    s = settings.supersample
    if s > 1:
        h, w = rgba.shape[0] // s, rgba.shape[1] // s
        premultiplied = rgba.copy()
        premultiplied[..., :3] *= premultiplied[..., 3:4]
        premultiplied = premultiplied.reshape(h, s, w, s, 4).mean(axis=(1, 3))
        alpha = premultiplied[..., 3:4]
        rgba = premultiplied.copy()
        rgba[..., :3] = np.where(alpha > 0, premultiplied[..., :3] / np.maximum(alpha, 1e-8), 0.0)
    if not settings.rgba:
        rgba = rgba.copy()
        alpha = rgba[..., 3:4]
        rgba[..., :3] = rgba[..., :3] * alpha + (1.0 - alpha)
    return rgba


def render_to(path: Path, camera, settings: RenderSettings) -> None:
    """Render the current frame from ``camera`` into ``path`` (RGBA PNG, see ``finish_image``)."""
    scene = bpy.context.scene
    scene.camera = camera
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    if settings.supersample > 1 or not settings.rgba:
        write_png(path, finish_image(read_png(path), settings))


def write_strip(paths: list[Path], out: Path) -> None:
    """Place equally sized PNGs side by side in one image."""
    images = [read_png(p) for p in paths]
    write_png(out, np.concatenate(images, axis=1))
