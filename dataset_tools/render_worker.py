"""Render every clip of one asset (runs inside Blender: stdlib, numpy, bpy).

``render_asset(job)`` is what one worker process does for one asset; render.py builds the job and
collects the result. The output layout is documented in docs/data.md.
"""

from __future__ import annotations

import json
import shutil
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dataset_tools import blender_render, blender_scene, blender_tracks, render_plan
from dataset_tools.render_plan import (
    ASSET_FILE,
    CLIP_FILE,
    clip_done,
    job_settings,
    select_frames,
    write_json_atomic,
)
from puppet_master import cameras

#: fractions of the clip shown in the review strip ("the quarters of the animation")
REVIEW_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
#: surface points followed over every whole frame of a long clip to find where it moves most
MOTION_PROBE_POINTS = 256


@dataclass
class RenderJob:
    asset_id: str
    source: str
    out_root: str
    render: blender_render.RenderSettings = field(default_factory=blender_render.RenderSettings)
    views: int = 12
    frames: int = 14
    stride: float = 0.0
    points: int = 4096
    seed: int = 0
    distance_range: tuple[float, float] = cameras.DEFAULT_DISTANCE_RANGE
    elevation_range: tuple[float, float] = cameras.DEFAULT_ELEVATION_RANGE
    azimuth_offset: float | None = 0.0
    focal_mm: float = cameras.DEFAULT_FOCAL_MM
    sensor_mm: float = cameras.DEFAULT_SENSOR_MM
    clips: list[str] | None = None
    review_strip: bool = False
    max_step: float = render_plan.DEFAULT_MAX_STEP

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def settings(self) -> dict:
        """What shapes the output (recorded in clip.json and asset.json; resume compares it)."""
        return job_settings(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RenderJob:
        data = json.loads(text)
        data["render"] = blender_render.RenderSettings(**data["render"])
        data["distance_range"] = tuple(data["distance_range"])
        data["elevation_range"] = tuple(data["elevation_range"])
        return cls(**data)


def log(message: str) -> None:
    print(message, flush=True)


def render_asset(job: RenderJob) -> dict:
    """Render every selected clip; returns the asset's report record (also saved as asset.json)."""
    started = time.monotonic()
    asset_dir = Path(job.out_root) / job.asset_id
    settings = job.settings()
    record = {"asset_id": job.asset_id, "source": job.source, "status": "ok", "reason": "",
              "requested_clips": job.clips, "clips": [], "clip_folders": [], "clips_rendered": 0, "clips_resumed": 0,
              "clips_failed": {}, "settings": settings}
    try:
        blender_scene.reset_scene()
        blender_scene.import_asset(Path(job.source))
        objects = blender_scene.geometry_objects()
        if not objects:
            raise _SkipError("no renderable geometry")
        clips = blender_scene.find_clips()
        if not clips:
            raise _SkipError("no animation")
        selected = clips if not job.clips else [c for c in clips if c.name in job.clips]
        if not selected:
            raise _SkipError(f"none of the requested clips {job.clips} exists (clips: {[c.name for c in clips]})")
        blender_render.configure(job.render)
        folders = _clip_folders([c.name for c in selected])
        for number, clip in enumerate(selected, 1):
            clip_dir = asset_dir / folders[clip.name]
            record["clips"].append(clip.name)
            record["clip_folders"].append(folders[clip.name])
            if clip_done(clip_dir, settings):
                record["clips_resumed"] += 1
                log(f"{job.asset_id}: clip {number}/{len(selected)} {clip.name!r} already rendered, skipped")
                continue
            if clip_dir.exists():  # an unfinished clip, or one rendered with other settings: start afresh
                shutil.rmtree(clip_dir)
            try:
                seconds = render_clip(job, clip, clips, objects, clip_dir)
                record["clips_rendered"] += 1
                log(f"{job.asset_id}: clip {number}/{len(selected)} {clip.name!r} done in {seconds:.1f}s")
            except (blender_scene.AssetError, blender_tracks.TrackingError, RuntimeError) as exc:
                record["clips_failed"][clip.name] = str(exc)
                log(f"{job.asset_id}: clip {clip.name!r} failed: {exc}")
        if record["clips_failed"] and not record["clips_rendered"] and not record["clips_resumed"]:
            record["status"] = "failed"
            record["reason"] = "every clip failed: " + "; ".join(
                f"{k}: {v}" for k, v in record["clips_failed"].items()
            )
    except _SkipError as exc:
        record.update(status="skipped", reason=str(exc))
    except blender_scene.AssetError as exc:
        record.update(status="failed", reason=str(exc))
    record["seconds"] = round(time.monotonic() - started, 2)
    if record["status"] != "failed":  # failed assets are retried by the next run
        write_json_atomic(asset_dir / ASSET_FILE, record)
    return record


class _SkipError(Exception):
    pass


def _clip_folders(names: list[str]) -> dict[str, str]:
    folders: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        folder = blender_scene.safe_name(name)
        while folder in used:
            folder += "_"
        used.add(folder)
        folders[name] = folder
    return folders


def _views(job: RenderJob, corners: np.ndarray, k_matrix: np.ndarray, size: int) -> list[cameras.View]:
    seed = (job.seed * 1_000_003 + zlib.crc32(job.asset_id.encode())) % 2**32
    views = cameras.sample_views(job.views, seed, job.distance_range, job.elevation_range, job.azimuth_offset)
    return [cameras.fit_distance(v, corners, k_matrix, size, size) for v in views]


def render_clip(job: RenderJob, clip, all_clips, objects, clip_dir: Path) -> float:
    """Render one clip into ``clip_dir``; clip.json is written last (it marks the clip finished)."""
    # 1. play this clip only, choose its frames: spread over the clip, or in a long clip the window
    #    of steps of at most job.max_step frames where it moves most
    started = time.monotonic()
    blender_scene.activate_clip(clip, all_clips)
    frames = select_frames(clip.frame_start, clip.frame_end, job.frames, job.stride)
    window = None
    if render_plan.needs_window(clip.frame_start, clip.frame_end, job.frames, job.stride, job.max_step):
        times = blender_scene.bbox_frames(clip, [])
        frames = render_plan.motion_window(times, clip_motion(objects, times, job), job.frames, job.max_step)
        window = [frames[0], frames[-1]]
    # 2. normalise over every frame of the clip (of the window, when one is rendered)
    scale, offset, lo, hi = blender_scene.normalize_clip(
        objects, blender_scene.bbox_frames(clip, frames, window=window))
    corners = blender_scene.box_corners(lo, hi)
    # 3. cameras: uniform azimuth on the northern hemisphere, pushed back if the clip would leave the frame
    size = job.render.resolution
    k_matrix = cameras.intrinsics(size, size, job.focal_mm, job.sensor_mm)
    fov = cameras.fov_deg(job.focal_mm, job.sensor_mm)
    views = _views(job, corners, k_matrix, size)
    w2cs = [cameras.view_world_to_camera(v) for v in views]
    cams = [blender_scene.make_camera(f"PM_view_{i:02d}", w, job.focal_mm, job.sensor_mm) for i, w in enumerate(w2cs)]
    # 4. sample surface points at the first frame
    blender_scene.set_frame(frames[0])
    rng = np.random.default_rng((job.seed, zlib.crc32(f"{job.asset_id}/{clip.name}".encode())))
    samples = blender_tracks.sample_surface(objects, job.points, rng)
    # 5. every frame: follow the points, their visibility per view, render every view
    points = np.zeros((len(frames), job.points, 3), dtype=np.float32)
    visibility = np.zeros((len(views), len(frames), job.points), dtype=bool)
    timing = {"tracks": 0.0, "images": 0.0}
    for t, frame in enumerate(frames):
        tick = time.monotonic()
        blender_scene.set_frame(frame)
        geometry = blender_tracks.frame_geometry(objects)
        points[t] = blender_tracks.track_points(samples, geometry)
        bvh = blender_tracks.build_bvh(geometry)
        for v in range(len(cams)):
            visibility[v, t] = blender_tracks.visibility(points[t].astype(np.float64), bvh, k_matrix, w2cs[v], (size, size))
        timing["tracks"] += time.monotonic() - tick
        tick = time.monotonic()
        for v, cam in enumerate(cams):
            blender_render.render_to(clip_dir / f"view_{v:02d}" / f"{t:04d}.png", cam, job.render)
        timing["images"] += time.monotonic() - tick
        log(f"{job.asset_id}/{clip.name}: frame {t + 1}/{len(frames)}")
    # 6. review strip: the front view at the quarters of the clip
    review = None
    if job.review_strip:
        review = _review_strip(job, clip, corners, k_matrix, clip_dir)
    # 7. files: cameras, tracks, then clip.json
    write_json_atomic(clip_dir / "cameras.json", {
        "convention": cameras.CONVENTION_TEXT,
        "image_size": [size, size],
        "views": [cameras.camera_record(i, v, k_matrix, w, fov) for i, (v, w) in enumerate(zip(views, w2cs, strict=True))],
    })
    tmp = clip_dir / "tracks.tmp.npz"
    np.savez_compressed(
        tmp,
        points=points,
        part_ids=samples.part_ids.astype(np.int32),
        part_names=np.array(samples.part_names, dtype=str),
        bone_ids=samples.bone_ids.astype(np.int32),
        bone_names=np.array(samples.bone_names, dtype=str),
        visibility=visibility,
        frame_indices=np.array(frames, dtype=np.float64),
    )
    tmp.replace(clip_dir / "tracks.npz")
    seconds = time.monotonic() - started
    settings = job.render
    write_json_atomic(clip_dir / CLIP_FILE, {
        "asset_id": job.asset_id,
        "source": job.source,
        "clip": clip.name,
        "fps": bpy_fps(),
        "frame_indices": frames,
        "stride": _stride(frames),
        "num_frames": len(frames),
        "clip_frame_range": [clip.frame_start, clip.frame_end],
        "window": window,
        "normalization": {"scale": scale, "offset": offset},
        "bbox": [lo.tolist(), hi.tolist()],
        "engine": settings.engine,
        "device": blender_render.effective_device(settings),
        "samples": settings.samples if settings.engine != "workbench" else None,
        "denoise": settings.denoise if settings.engine == "cycles" else False,
        "denoise_quality": settings.denoise_quality if settings.engine == "cycles" and settings.denoise else None,
        "supersample": settings.supersample,
        "resolution": [size, size],
        "views": len(views),
        "num_points": job.points,
        "background": "transparent" if settings.rgba else "white",
        "seed": job.seed,
        "review_strip": review,
        "seconds": round(seconds, 2),
        "seconds_tracks": round(timing["tracks"], 2),
        "seconds_images": round(timing["images"], 2),
        "settings": job.settings(),
    })
    return seconds


def clip_motion(objects, times: list[float], job: RenderJob) -> list[float]:
    """Mean displacement of a few surface points between consecutive ``times`` (world units)."""
    blender_scene.set_frame(times[0])
    rng = np.random.default_rng((job.seed, zlib.crc32(f"{job.asset_id}/motion".encode())))
    probe = blender_tracks.sample_surface(objects, MOTION_PROBE_POINTS, rng)
    previous, motion = None, []
    for frame in times:
        blender_scene.set_frame(frame)
        now = blender_tracks.track_points(probe, blender_tracks.frame_geometry(objects))
        if previous is not None:
            motion.append(float(np.linalg.norm(now - previous, axis=1).mean()))
        previous = now
    return motion


def bpy_fps() -> float:
    import bpy

    render = bpy.context.scene.render
    return render.fps / render.fps_base


def _stride(frames: list[float]) -> float:
    return round(frames[1] - frames[0], 4) if len(frames) > 1 else 0.0


def _review_strip(job: RenderJob, clip, corners: np.ndarray, k_matrix: np.ndarray, clip_dir: Path) -> dict:
    size = job.render.resolution
    front = cameras.View(0.0, float(np.mean(job.elevation_range)), float(np.mean(job.distance_range)))
    front = cameras.fit_distance(front, corners, k_matrix, size, size)
    cam = blender_scene.make_camera("PM_front", cameras.view_world_to_camera(front), job.focal_mm, job.sensor_mm)
    span = clip.frame_end - clip.frame_start
    frames = [round(clip.frame_start + q * span, 4) for q in REVIEW_FRACTIONS]
    paths = []
    for i, frame in enumerate(frames):
        blender_scene.set_frame(frame)
        path = clip_dir / "review" / f"{i}.png"
        blender_render.render_to(path, cam, job.render)
        paths.append(path)
    blender_render.write_strip(paths, clip_dir / "review_strip.png")
    return {"path": "review_strip.png", "frames": frames, "fractions": list(REVIEW_FRACTIONS),
            "azimuth_deg": front.azimuth_deg, "elevation_deg": front.elevation_deg, "distance": front.distance}


def main(job_json: str, result_path: str | None) -> int:
    job = RenderJob.from_json(job_json)
    record = render_asset(job)
    if result_path:
        write_json_atomic(Path(result_path), record)
    log(json.dumps({"asset_id": record["asset_id"], "status": record["status"], "reason": record["reason"]}))
    return 0
