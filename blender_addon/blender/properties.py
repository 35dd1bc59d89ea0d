"""Scene data saved in the .blend: drags, reference image, generation settings, job state."""


import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..core import job

JOB_STATES = [(state, state.title(), "") for state in job.STATES]


def _redraw(_self, context) -> None:
    screen = getattr(context, "screen", None)
    if screen is not None:
        for area in screen.areas:
            if area.type in {"VIEW_3D", "PROPERTIES"}:
                area.tag_redraw()


TIMING_ITEMS = [
    ("LINEAR", "Linear", "Even speed along the path"),
    ("EASE_IN", "Ease In", "Starts slowly, ends fast"),
    ("EASE_OUT", "Ease Out", "Starts fast, ends slowly"),
    ("EASE_IN_OUT", "Ease In-Out", "Slow at both ends"),
    ("CUSTOM", "Custom (F-Curve)", "Keyframe the drag's Progress: its values over the 14 frames from the current "
     "frame place the drag along its path"),
]


class PUPPET_PG_point(bpy.types.PropertyGroup):
    co: FloatVectorProperty(name="Point", size=2, precision=4)


class PUPPET_PG_drag(bpy.types.PropertyGroup):
    start: FloatVectorProperty(
        name="Start", size=2, min=0.0, max=1.0, precision=3, update=_redraw,
        description="Where the drag starts, as fractions of the square camera frame (x right, y down)",
    )  # fmt: skip
    end: FloatVectorProperty(
        name="End", size=2, min=0.0, max=1.0, precision=3, update=_redraw,
        description="Where the dragged point should move to (x right, y down)",
    )  # fmt: skip
    shape: CollectionProperty(
        type=PUPPET_PG_point, name="Shape",
        description="The path of a curved drag, start to end (empty: a straight drag); it follows Start and End",
    )  # fmt: skip
    timing: EnumProperty(
        name="Timing", items=TIMING_ITEMS, default="LINEAR", update=_redraw,
        description="Where along its path the drag is in each of the 14 frames",
    )  # fmt: skip
    progress: FloatProperty(
        name="Progress", default=0.0, update=_redraw,
        description="Keyframe this over 14 frames for a Custom timing (any range: it is normalised)",
    )  # fmt: skip
    source: StringProperty(
        name="Source", default="",
        description="An object, empty or ARMATURE:BONE whose animation is this drag (Drag from Object); "
        "its path is taken again from the animation at every Generate",
    )  # fmt: skip
    source_start: IntProperty(name="Source Start Frame", default=1)
    camera: PointerProperty(
        name="Camera", type=bpy.types.Object,
        description="The camera whose shot this drag belongs to (each camera keeps its own drags)",
    )  # fmt: skip
    anchor_object: PointerProperty(
        name="Anchor", type=bpy.types.Object,
        description="The object the drag was drawn on: the drag follows this surface point when the camera, "
        "lens or resolution changes",
    )  # fmt: skip
    anchor_co: FloatVectorProperty(name="Anchor Point", size=3, description="The anchor, in the object's own coordinates")
    source_frames: IntProperty(name="Source Frames", default=14, min=2, max=10000)


class PUPPET_PG_scene(bpy.types.PropertyGroup):
    drags: CollectionProperty(type=PUPPET_PG_drag)
    active_drag: IntProperty(name="Active Drag", default=0, min=0)
    reference_image: PointerProperty(
        name="Reference", type=bpy.types.Image,
        description="The image the model animates: rendered from the active camera, or one you pick",
    )  # fmt: skip
    reference_alpha: PointerProperty(
        name="Reference Alpha", type=bpy.types.Image,
        description="The transparent render behind the reference (used to warn about drags off the object)",
    )  # fmt: skip
    reference_note: StringProperty(name="Reference Note", default="")
    reference_warning: StringProperty(name="Reference Warning", default="")
    drag_warning: StringProperty(name="Drag Warning", default="")
    anchor_warning: StringProperty(name="Anchor Warning", default="")
    reference_size: IntProperty(name="Reference Size", default=256, min=64, max=1024, subtype="PIXEL")

    use_scene_settings: BoolProperty(
        name="Override Defaults", default=False,
        description="Use the steps, guidance and seed below instead of the add-on preferences",
    )  # fmt: skip
    steps: IntProperty(name="Steps", default=25, min=1, max=200)
    guidance: FloatProperty(
        name="Guidance", default=0.0, min=0.0, max=50.0,
        description="Guidance of the last frame (the first has 1); 0: the model's own (5 for Puppet-Master, 1 for the bundled tiny model)",
    )
    seed: IntProperty(name="Seed", default=0, min=0)
    replace_result: BoolProperty(
        name="Replace Previous Result", default=True,
        description="Replace the last result plane; off adds a new variant beside it",
    )  # fmt: skip

    variants: IntProperty(
        name="Variants", default=1, min=1, max=8,
        description="Videos to choose from, one per seed (seed, seed + 1, ...)",
    )
    segments: IntProperty(
        name="Segments", default=1, min=1, max=8,
        description="A longer clip: 14-frame segments, each starting from the last frame of the one before "
        "(segments x 13 + 1 frames; the model was trained on 14-frame clips)",
    )
    result_variants: IntProperty(name="Result Variants", default=0, min=0, options={"HIDDEN"})
    result_variant: IntProperty(name="Chosen Variant", default=0, min=0, options={"HIDDEN"})
    result_start: IntProperty(
        name="Start Frame", default=-1, min=-1,
        description="Scene frame where the result starts playing; -1: the scene's start frame",
    )
    result_hold: IntProperty(
        name="Hold", default=1, min=1, max=24,
        description="Scene frames each generated frame lasts (2: the clip plays at half speed, twice as long)",
    )  # fmt: skip

    job_id: StringProperty(name="Job", default="")
    job_endpoint: StringProperty(name="Job Endpoint", default="")
    #: the job's token (from its acceptance): the backend gives the job only to its owner
    job_token: StringProperty(name="Job Token", default="", options={"HIDDEN"})
    preview_image: PointerProperty(
        name="Preview", type=bpy.types.Image,
        description="The newest progress preview of the running job (the decoded estimate of its frames)",
    )  # fmt: skip
    job_camera: PointerProperty(
        name="Job Camera", type=bpy.types.Object,
        description="The camera whose shot the job was made from: its result plane goes there",
    )  # fmt: skip
    job_state: EnumProperty(name="Job State", items=JOB_STATES, default="IDLE")
    job_progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    job_status_text: StringProperty(name="Status", default="")
    job_error: StringProperty(name="Error", default="")
    result_folder: StringProperty(name="Result Folder", default="", subtype="DIR_PATH")
    result_object: PointerProperty(name="Result Plane", type=bpy.types.Object)


classes = (PUPPET_PG_point, PUPPET_PG_drag, PUPPET_PG_scene)


def register() -> None:
    bpy.types.Scene.puppet_master = PointerProperty(type=PUPPET_PG_scene)


def unregister() -> None:
    del bpy.types.Scene.puppet_master
