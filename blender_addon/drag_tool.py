"""The Draw Drags tool: a modal operator in the camera view (overlay drawn by overlay_draw)."""


import bpy

from . import overlay_draw, overlay_geometry
from ._light import light_module
from .operators import update_drag_warning

drags_mod = light_module("drags")

HELP_TEXT = "Drag: click-drag to draw an arrow, drag a handle to move it, right-click or X deletes, Enter/Esc ends"
PASS_THROUGH = {"MIDDLEMOUSE", "WHEELUPMOUSE", "WHEELDOWNMOUSE", "TRACKPADPAN", "TRACKPADZOOM"}


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
        self._grab: tuple[int, str] | None = None
        context.window_manager.modal_handler_add(self)
        context.area.header_text_set(HELP_TEXT)
        context.area.tag_redraw()
        return {"RUNNING_MODAL"}

    def _finish(self, context):
        context.area.header_text_set(None)
        context.area.tag_redraw()
        update_drag_warning(context.scene, self)
        return {"FINISHED"}

    def modal(self, context, event):
        if event.type in PASS_THROUGH:
            return {"PASS_THROUGH"}
        if event.type in {"RET", "NUMPAD_ENTER", "ESC"} and event.value == "PRESS":
            return self._finish(context)
        mapping = overlay_draw.view_mapping(context)
        if mapping is None:
            return {"PASS_THROUGH"} if event.type not in {"LEFTMOUSE", "RIGHTMOUSE"} else {"RUNNING_MODAL"}
        mouse = (event.mouse_region_x, event.mouse_region_y)
        props = context.scene.puppet_master
        shapes = overlay_draw.scene_shapes(context.scene, mapping)
        if event.type == "MOUSEMOVE" and self._grab is not None:
            index, which = self._grab
            setattr(props.drags[index], which, overlay_geometry.clamp_unit(*mapping.from_region(*mouse)))
            context.area.tag_redraw()
        elif event.type == "LEFTMOUSE" and event.value == "PRESS":
            hit = overlay_geometry.pick_handle(shapes, *mouse)
            if hit is not None:
                self._grab = hit
                props.active_drag = hit[0]
            elif mapping.contains(*mouse):
                if len(props.drags) >= drags_mod.MAX_DRAGS:
                    self.report({"WARNING"}, f"the model takes at most {drags_mod.MAX_DRAGS} drags")
                    return {"RUNNING_MODAL"}
                drag = props.drags.add()
                drag.start = drag.end = mapping.from_region(*mouse)
                props.active_drag = len(props.drags) - 1
                self._grab = (props.active_drag, "end")
                update_drag_warning(context.scene, self)
            context.area.tag_redraw()
        elif event.type == "LEFTMOUSE" and event.value == "RELEASE":
            self._grab = None
            update_drag_warning(context.scene, self)
        elif event.type in {"RIGHTMOUSE", "X", "DEL"} and event.value == "PRESS":
            hit = overlay_geometry.pick_handle(shapes, *mouse)
            if hit is not None:
                props.drags.remove(hit[0])
                props.active_drag = max(0, min(props.active_drag, len(props.drags) - 1))
                self._grab = None
                update_drag_warning(context.scene)
                context.area.tag_redraw()
        return {"RUNNING_MODAL"}


classes = (PUPPET_OT_draw_drags,)
