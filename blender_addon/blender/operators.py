"""Operators: reference render, drags (numeric), generate, cancel, fetch, ping, local backend."""


import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty

from ..core import backend_process, camera_frame, job, reference_image, results, sequencer_layout
from ..core._light import light_module
from ..core.clip_timing import ClipTiming
from ..core.drag_editing import new_drag_position
from . import anchors, generation, preferences, reference, result_plane, runtime, scene_drags

drags_mod = light_module("drags")


class PUPPET_OT_render_reference(bpy.types.Operator):
    """Render the active camera (square, transparent film, on white) as the reference image"""

    bl_idname = "puppet_master.render_reference"
    bl_label = "Render Reference"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        try:
            image = reference.render_reference(scene, scene.puppet_master.reference_size)
        except (camera_frame.CameraFrameError, reference_image.ReferenceImageError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        update_drag_warning(scene, self)
        if scene.puppet_master.reference_warning:
            self.report({"WARNING"}, scene.puppet_master.reference_warning)
        note = scene.puppet_master.reference_note
        self.report({"INFO"}, f"Reference rendered: {image.size[0]}x{image.size[1]}" + (f". {note}" if note else ""))
        return {"FINISHED"}


def update_drag_warning(scene, operator=None) -> str:
    """Recompute the off-object warning, store it for the panel and report it."""
    try:
        text = reference.drag_warning_text(reference.off_object_drags(scene))
    except reference_image.ReferenceImageError as exc:
        text = f"Cannot check drags against the reference: {exc}"
    scene.puppet_master.drag_warning = text
    if text and operator is not None:
        operator.report({"WARNING"}, text)
    return text


class PUPPET_OT_drag_add(bpy.types.Operator):
    """Add a drag in the middle of the frame (edit it numerically or with Draw Drags)"""

    bl_idname = "puppet_master.drag_add"
    bl_label = "Add Drag"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        props = context.scene.puppet_master
        count = len(scene_drags.shot_indices(context.scene))
        if count >= drags_mod.MAX_DRAGS:
            self.report({"ERROR"}, f"the model takes at most {drags_mod.MAX_DRAGS} drags")
            return {"CANCELLED"}
        index = scene_drags.new_drag(context.scene)
        drag = props.drags[index]
        drag.start, drag.end = new_drag_position(count)
        anchors.anchor_drag(context.scene, drag)
        props.active_drag = index
        update_drag_warning(context.scene, self)
        return {"FINISHED"}


def _active_target(context) -> str:
    """The active object's name, or ARMATURE:BONE for the active pose bone in Pose Mode."""
    obj = context.active_object
    if obj is None:
        return ""
    bone = getattr(context, "active_pose_bone", None)
    if obj.type == "ARMATURE" and obj.mode == "POSE" and bone is not None:
        return f"{obj.name}:{bone.name}"
    return obj.name


class PUPPET_OT_drag_from_object(bpy.types.Operator):
    """Add a drag that follows an object, empty or pose bone: its animated position over a frame range, projected through the camera (keyframes, constraints and follow-path set its path and timing)"""

    bl_idname = "puppet_master.drag_from_object"
    bl_label = "Drag from Object"
    bl_options = {"REGISTER", "UNDO"}

    target: StringProperty(
        name="Target", default="",
        description="An object's name, or ARMATURE:BONE; empty: the active object (its active bone in Pose Mode)",
    )  # fmt: skip
    frame_start: IntProperty(name="Start Frame", default=-1, description="First frame of the motion; -1: the current frame")
    frame_count: IntProperty(name="Frames", default=14, min=2, max=10000,
                             description="Frames the motion spans (resampled to the model's 14)")

    def execute(self, context):
        from . import scene_sources

        scene = context.scene
        props = scene.puppet_master
        if len(scene_drags.shot_indices(scene)) >= drags_mod.MAX_DRAGS:
            self.report({"ERROR"}, f"the model takes at most {drags_mod.MAX_DRAGS} drags")
            return {"CANCELLED"}
        target = self.target or _active_target(context)
        if not target:
            self.report({"ERROR"}, "select the object (or pose bone) to follow, or give its name as the target")
            return {"CANCELLED"}
        index = scene_drags.new_drag(scene)
        item = props.drags[index]
        item.source = target
        item.source_start = scene.frame_current if self.frame_start < 0 else self.frame_start
        item.source_frames = self.frame_count
        try:
            scene_sources.apply_source(scene, item)
        except (scene_sources.SourceError, camera_frame.CameraFrameError) as exc:
            props.drags.remove(index)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        props.active_drag = index
        update_drag_warning(scene, self)
        return {"FINISHED"}


class PUPPET_OT_drag_remove(bpy.types.Operator):
    """Delete a drag"""

    bl_idname = "puppet_master.drag_remove"
    bl_label = "Remove Drag"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(default=-1)

    def execute(self, context):
        props = context.scene.puppet_master
        index = self.index if self.index >= 0 else props.active_drag
        if not 0 <= index < len(props.drags):
            self.report({"ERROR"}, f"there is no drag {index + 1}")
            return {"CANCELLED"}
        props.drags.remove(index)
        props.active_drag = max(0, min(props.active_drag, len(props.drags) - 1))
        update_drag_warning(context.scene)
        return {"FINISHED"}


class PUPPET_OT_check_drags(bpy.types.Operator):
    """Warn about drags that start off the object"""

    bl_idname = "puppet_master.check_drags"
    bl_label = "Check Drags"

    def execute(self, context):
        text = update_drag_warning(context.scene, self)
        if not text:
            self.report({"INFO"}, "Every drag starts on the object")
        return {"FINISHED"}


class PUPPET_OT_generate(bpy.types.Operator):
    """Send the reference and drags to the backend; the result appears as a plane in the camera view (Esc cancels)"""

    bl_idname = "puppet_master.generate"
    bl_label = "Generate"

    wait: BoolProperty(
        name="Wait", default=False, options={"SKIP_SAVE"},
        description="Run the job to its end inside this call, printing progress (scripts and `blender -b`, "
        "where timers do not run); the plane is built before it returns",
    )  # fmt: skip
    timeout: FloatProperty(name="Timeout", default=0.0, min=0.0, options={"SKIP_SAVE"},
                           description="With Wait: give up (and cancel the job) after this many seconds; 0: never")

    def _start(self, context) -> bool:
        scene = context.scene
        try:
            update_drag_warning(scene, self)
            generation.start(scene)
        except (generation.GenerateError, reference_image.ReferenceImageError) as exc:
            scene.puppet_master.job_error = str(exc)
            self.report({"ERROR"}, str(exc))
            return False
        return True

    def execute(self, context):
        if not self._start(context):
            return {"CANCELLED"}
        if not self.wait:
            return {"FINISHED"}
        props = generation.wait(context.scene, self.timeout or None, on_status=lambda text: print(f"Puppet-Master: {text}",
                                                                                                  flush=True))
        if props.job_state != "DONE":
            self.report({"ERROR"}, props.job_error or f"the job ended {props.job_state.lower()}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Puppet-Master: done, frames in {props.result_folder}")
        return {"FINISHED"}


class PUPPET_OT_result_to_sequencer(bpy.types.Operator):
    """Put the scene's last result into the Video Sequence Editor as an image strip, on the lowest free channel, named with its job and seed"""

    bl_idname = "puppet_master.result_to_sequencer"
    bl_label = "Add to Sequencer"
    bl_options = {"REGISTER", "UNDO"}

    frame_start: IntProperty(name="Start Frame", default=-1,
                             description="-1: the result's Start Frame in the panel (or the scene's start)")

    def execute(self, context):
        import json
        from pathlib import Path

        scene = context.scene
        folder = Path(bpy.path.abspath(scene.puppet_master.result_folder or ""))
        frames = results.existing_frames(folder) if folder.is_dir() else []
        if not frames:
            self.report({"ERROR"}, "no result frames to add: Generate (or Fetch) first")
            return {"CANCELLED"}
        try:
            seed = json.loads((folder / results.SETTINGS_FILE).read_text()).get("settings", {}).get("seed")
        except (OSError, ValueError, AttributeError):
            seed = None
        start = generation.result_start(scene) if self.frame_start < 0 else self.frame_start
        clip = ClipTiming(start, scene.puppet_master.result_hold, len(frames))
        editor = scene.sequence_editor_create()
        occupied = [(s.channel, int(s.frame_final_start), int(s.frame_final_end)) for s in editor.strips_all]
        channel = sequencer_layout.free_channel(occupied, start, clip.last + 1)
        props = scene.puppet_master
        variant = props.result_variant if props.result_variants > 1 else None
        name = sequencer_layout.strip_name(props.job_id or folder.name, seed, variant)
        order = clip.held_order()  # an image strip may name a file more than once: each held frame
        strip = editor.strips.new_image(name, str(frames[order[0]]), channel, start)
        for index in order[1:]:
            strip.elements.append(frames[index].name)
        self.report({"INFO"}, f"added {name} ({clip.length} scene frames) on channel {channel}")
        return {"FINISHED"}


class PUPPET_OT_choose_variant(bpy.types.Operator):
    """Put this variant of the result on the camera's plane (the others stay on disk)"""

    bl_idname = "puppet_master.choose_variant"
    bl_label = "Choose Variant"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(name="Variant", default=0, min=0)

    def execute(self, context):
        from pathlib import Path

        props = context.scene.puppet_master
        plane = props.result_object
        if props.result_variants < 2 or plane is None or self.index >= props.result_variants:
            self.report({"ERROR"}, "the last result has no such variant (or its plane was deleted)")
            return {"CANCELLED"}
        folder = Path(bpy.path.abspath(props.result_folder)).parent / results.VARIANT_FOLDER.format(self.index)
        frames = results.existing_frames(folder)
        if not frames:
            self.report({"ERROR"}, f"variant {self.index + 1} has no frames in {folder}")
            return {"CANCELLED"}
        result_plane.show_variant(plane, frames)
        props.result_folder, props.result_variant = str(folder), self.index
        self.report({"INFO"}, f"variant {self.index + 1} is on the plane")
        return {"FINISHED"}


class PUPPET_OT_cancel(bpy.types.Operator):
    """Cancel the running Puppet-Master job (Esc)"""

    bl_idname = "puppet_master.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        # only while a job runs, so that Esc keeps its usual meaning otherwise
        return context.scene is not None and context.scene.name in runtime.STATE.controllers

    def execute(self, context):
        generation.cancel(context.scene)
        self.report({"INFO"}, "Cancelling the Puppet-Master job")
        return {"FINISHED"}


class PUPPET_OT_fetch_result(bpy.types.Operator):
    """Fetch the result of the job saved in this scene (or another job id)"""

    bl_idname = "puppet_master.fetch_result"
    bl_label = "Fetch Result"

    job_id: StringProperty(name="Job", default="")

    def execute(self, context):
        try:
            generation.attach(context.scene, self.job_id or None)
        except generation.GenerateError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class PUPPET_OT_ping(bpy.types.Operator):
    """Ask the backend for its model and device (answers within a few seconds; Blender does not wait)"""

    bl_idname = "puppet_master.ping"
    bl_label = "Check Connection"

    def execute(self, context):
        prefs = preferences.get(context)
        if runtime.STATE.pinger is not None:
            runtime.STATE.pinger.client.close()
        try:
            runtime.STATE.pinger = job.Pinger(prefs.endpoint, job.resolve_server_key(prefs.server_key))
        except (job.ServerKeyError, job.protocol.EndpointError) as exc:
            runtime.STATE.pinger = None
            runtime.STATE.connection_text = str(exc) if isinstance(exc, job.ServerKeyError) else f"Backend Endpoint: {exc}"
            self.report({"ERROR"}, runtime.STATE.connection_text)
            return {"CANCELLED"}
        runtime.STATE.connection_text = f"Contacting {runtime.STATE.pinger.endpoint}..."
        runtime.ensure_timer()
        return {"FINISHED"}


class PUPPET_OT_backend_start(bpy.types.Operator):
    """Start `puppet-master serve` on this machine with the Python and model options from the preferences"""

    bl_idname = "puppet_master.backend_start"
    bl_label = "Start Local Backend"

    def execute(self, context):
        prefs = preferences.get(context)
        memory = "" if prefs.backend_memory == "AUTO" else prefs.backend_memory
        settings = backend_process.LaunchSettings(prefs.backend_python, prefs.endpoint, prefs.backend_model_args,
                                                  memory=memory)
        try:
            runtime.STATE.backend.start(settings)
        except backend_process.BackendLaunchError as exc:
            runtime.STATE.backend_error = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        runtime.STATE.backend_error = ""
        runtime.STATE.backend_watch = True
        runtime.ensure_timer()
        self.report({"INFO"}, f"Local backend starting (log: {runtime.STATE.backend.log_path})")
        return {"FINISHED"}


class PUPPET_OT_backend_stop(bpy.types.Operator):
    """Stop the local backend started from Blender"""

    bl_idname = "puppet_master.backend_stop"
    bl_label = "Stop Local Backend"

    def execute(self, context):
        if not runtime.STATE.backend.running:
            self.report({"WARNING"}, "no local backend is running")
            return {"CANCELLED"}
        runtime.STATE.backend_watch = False
        runtime.STATE.backend.stop()
        return {"FINISHED"}


classes = (
    PUPPET_OT_render_reference,
    PUPPET_OT_drag_add,
    PUPPET_OT_drag_from_object,
    PUPPET_OT_drag_remove,
    PUPPET_OT_check_drags,
    PUPPET_OT_generate,
    PUPPET_OT_result_to_sequencer,
    PUPPET_OT_cancel,
    PUPPET_OT_choose_variant,
    PUPPET_OT_fetch_result,
    PUPPET_OT_ping,
    PUPPET_OT_backend_start,
    PUPPET_OT_backend_stop,
)


#: (keymap name, space type) where Esc cancels a running job
ESC_KEYMAPS = (("3D View", "VIEW_3D"), ("Window", "EMPTY"))
_keymap_items: list = []


def register() -> None:
    keyconfig = bpy.context.window_manager.keyconfigs.addon
    if keyconfig is None:  # background mode has no add-on keyconfig
        return
    for name, space in ESC_KEYMAPS:
        keymap = keyconfig.keymaps.new(name=name, space_type=space)
        _keymap_items.append((keymap, keymap.keymap_items.new(PUPPET_OT_cancel.bl_idname, "ESC", "PRESS")))


def unregister() -> None:
    for keymap, item in _keymap_items:
        keymap.keymap_items.remove(item)
    _keymap_items.clear()
