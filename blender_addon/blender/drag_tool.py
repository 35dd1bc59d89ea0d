"""The Draw Drags tool: a modal operator in the camera view (thin: the editing rules are in drag_editing)."""

import bpy

from ..core import drag_editing
from ..core._light import light_module
from . import anchors, overlay_draw, scene_drags
from .operators import update_drag_warning

drags_mod = light_module("drags")

HELP_TEXT = "Drag: click-drag to draw an arrow, drag a handle to move it, right-click or X deletes, Enter/Esc ends"
PASS_THROUGH = {"MIDDLEMOUSE", "WHEELUPMOUSE", "WHEELDOWNMOUSE", "TRACKPADPAN", "TRACKPADZOOM"}


def editor_from_scene(scene) -> drag_editing.DragEditor:
    """The active camera's drags, keyed by their index in the scene's list."""
    props = scene.puppet_master
    indices = scene_drags.shot_indices(scene)
    items = [props.drags[i] for i in indices]
    drags = [(tuple(d.start), tuple(d.end)) for d in items]
    shapes = [scene_drags.drag_shape(d) for d in items]
    active = indices.index(props.active_drag) if props.active_drag in indices else 0
    return drag_editing.DragEditor(drags, drags_mod.MAX_DRAGS, active=active, shapes=shapes, keys=list(indices))


def editor_to_scene(editor: drag_editing.DragEditor, scene) -> None:
    """Write the editor's drags back: deleted ones removed, new ones added to the active camera's
    shot, the others (timing, anchor, source kept) updated; other cameras' drags untouched."""
    props = scene.puppet_master
    kept = {k for k in editor.keys if k is not None}
    removed = sorted((i for i in scene_drags.shot_indices(scene) if i not in kept), reverse=True)
    for index in removed:
        props.drags.remove(index)
    indices = [None if k is None else k - sum(1 for r in removed if r < k) for k in editor.keys]
    indices = [scene_drags.new_drag(scene) if i is None else i for i in indices]  # items are fetched afresh below
    editor.keys = list(indices)
    for index, (start, end), shape in zip(indices, editor.drags, editor.shapes, strict=True):
        item = props.drags[index]
        if item.source and (tuple(item.start), tuple(item.end)) == (start, end):
            continue  # a drag from the scene's animation the tool did not touch
        item.source = ""  # edited by hand: it no longer follows its object
        moved_start = tuple(item.start) != start or item.anchor_object is None
        item.start, item.end = start, end
        scene_drags.set_shape(item, shape)
        if moved_start:
            anchors.anchor_drag(scene, item)
    props.active_drag = indices[editor.active] if indices else 0


class PUPPET_OT_draw_drags(bpy.types.Operator):
    """Draw, move and delete drag arrows in the camera view"""

    bl_idname = "puppet_master.draw_drags"
    bl_label = "Draw Drags"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D" and context.scene.camera is not None

    def invoke(self, context, event):
        rv3d = context.region_data
        if rv3d is None:
            self.report({"ERROR"}, "run Draw Drags from the 3D viewport")
            return {"CANCELLED"}
        if rv3d.view_perspective != "CAMERA":
            rv3d.view_perspective = "CAMERA"
        self._editor = editor_from_scene(context.scene)
        context.window_manager.modal_handler_add(self)
        context.area.header_text_set(HELP_TEXT)
        context.area.tag_redraw()
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type in PASS_THROUGH:
            return {"PASS_THROUGH"}
        if event.type in {"RET", "NUMPAD_ENTER", "ESC"} and event.value == "PRESS":
            context.area.header_text_set(None)
            context.area.tag_redraw()
            update_drag_warning(context.scene, self)
            return {"FINISHED"}
        mapping = overlay_draw.view_mapping(context)
        if mapping is None:
            return {"RUNNING_MODAL"}
        if event.value == "PRESS" and self._editor.grab is None:  # pick up edits made in the panel meanwhile
            self._editor = editor_from_scene(context.scene)
        editor, mouse = self._editor, (event.mouse_region_x, event.mouse_region_y)
        changed = False
        if event.type == "MOUSEMOVE":
            changed = editor.move(mapping, *mouse)
        elif event.type == "LEFTMOUSE" and event.value == "PRESS":
            outcome = editor.press(mapping, *mouse)
            changed = outcome in (drag_editing.GRABBED, drag_editing.ADDED)
            if outcome == drag_editing.FULL:
                self.report({"WARNING"}, f"the model takes at most {drags_mod.MAX_DRAGS} drags")
        elif event.type == "LEFTMOUSE" and event.value == "RELEASE":
            changed = editor.release(mapping)
            if editor.discarded:
                self.report({"WARNING"}, drag_editing.CLICK_MESSAGE)
        elif event.type in {"RIGHTMOUSE", "X", "DEL"} and event.value == "PRESS":
            changed = editor.delete_at(mapping, *mouse) is not None
        if changed:
            editor_to_scene(editor, context.scene)
            if event.type == "LEFTMOUSE":  # a new drag or a finished move: is it on the object?
                update_drag_warning(context.scene, self)
            context.area.tag_redraw()
        return {"RUNNING_MODAL"}


classes = (PUPPET_OT_draw_drags,)
