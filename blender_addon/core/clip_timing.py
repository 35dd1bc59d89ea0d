"""When a result plays in the scene (no bpy): from a start frame, each generated frame held for
``hold`` scene frames, so 14 frames can span a beat of the scene; and how far the scene's frame
range must grow to hold the clip."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .results import FRAME_PATTERN

MAX_HOLD = 24  # scene frames one generated frame may last (a second at 24 fps)
HOLD_FOLDER = "hold_{}"  # beside the frames: the held sequence, one file per scene frame


@dataclass(frozen=True)
class ClipTiming:
    """A clip of ``frames`` generated frames, starting at scene frame ``start``, each shown for
    ``hold`` scene frames."""

    start: int
    hold: int
    frames: int

    def __post_init__(self) -> None:
        if not 1 <= self.hold <= MAX_HOLD:
            raise ValueError(f"the hold factor must be 1-{MAX_HOLD} scene frames per generated frame, got {self.hold}")
        if self.frames < 1:
            raise ValueError("the clip has no frames")

    @property
    def length(self) -> int:
        """Scene frames the clip lasts."""
        return self.frames * self.hold

    @property
    def last(self) -> int:
        """The last scene frame of the clip."""
        return self.start + self.length - 1

    def frame_at(self, scene_frame: int) -> int | None:
        """The generated frame shown at ``scene_frame`` (None outside the clip)."""
        if not self.start <= scene_frame <= self.last:
            return None
        return (scene_frame - self.start) // self.hold

    def held_order(self) -> list[int]:
        """The generated frame of each scene frame of the clip, in order."""
        return [index for index in range(self.frames) for _ in range(self.hold)]


@dataclass(frozen=True)
class SceneRange:
    """The scene's frame range after a clip was placed; ``preview`` the range to loop, if any."""

    start: int
    end: int
    preview: tuple[int, int] | None


def scene_range(start: int, end: int, clip: ClipTiming, preview_in_use: bool) -> SceneRange:
    """Grow the scene range ``[start, end]`` only as far as the clip needs; a scene longer than the
    clip keeps its range and, unless a preview range is already in use, loops over the clip."""
    new_start, new_end = min(start, clip.start), max(end, clip.last)
    longer = clip.start > new_start or clip.last < new_end
    return SceneRange(new_start, new_end, (clip.start, clip.last) if longer and not preview_in_use else None)


def held_frames(frames: list[Path], clip: ClipTiming) -> list[Path]:
    """The image sequence that plays ``clip`` one file per scene frame: the frames themselves for a
    hold of 1, else ``hold_K/frame_0000.png`` ... beside them (links to the frames, copies where
    links are not possible), made again each time so they follow the frames."""
    if clip.hold == 1:
        return list(frames)
    folder = frames[0].parent / HOLD_FOLDER.format(clip.hold)
    folder.mkdir(exist_ok=True)
    held = []
    for position, index in enumerate(clip.held_order()):
        path = folder / FRAME_PATTERN.format(position)
        path.unlink(missing_ok=True)
        try:
            os.link(frames[index], path)
        except OSError:
            shutil.copyfile(frames[index], path)
        held.append(path)
    return held
