"""The sidebar panel (3D viewport > N > Puppet-Master) and the status-bar progress."""

from __future__ import annotations

import bpy

from ..core import job
from . import result_plane, runtime, scene_drags


class PUPPET_UL_drags(bpy.types.UIList):
    """The active camera's drags (each camera keeps its own)."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        shot = scene_drags.shot_indices(context.scene)
        row.label(text=f"{shot.index(index) + 1 if index in shot else '-'}")
        row.prop(item, "start", text="")
        row.label(icon="FORWARD")
        row.prop(item, "end", text="")

    def filter_items(self, context, data, propname):
        shot = set(scene_drags.shot_indices(context.scene))
        items = getattr(data, propname)
        return [self.bitflag_filter_item if i in shot else 0 for i in range(len(items))], []


class PUPPET_PT_main(bpy.types.Panel):
    bl_label = "Puppet-Master"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Puppet-Master"

    def draw(self, context):
        layout = self.layout
        props = context.scene.puppet_master

        box = layout.box()
        box.label(text="Reference", icon="IMAGE_DATA")
        box.operator("puppet_master.render_reference", icon="RENDER_STILL")
        box.template_ID(props, "reference_image", open="image.open")
        box.prop(props, "reference_size")
        if props.reference_note:
            box.label(text=props.reference_note, icon="INFO")
        if props.reference_warning:
            box.label(text=props.reference_warning, icon="ERROR")

        box = layout.box()
        camera = context.scene.camera
        shot = scene_drags.shot_indices(context.scene)
        box.label(text=f"Drags ({len(shot)}/5){f' of {camera.name}' if camera else ''}", icon="CON_TRACKTO")
        box.operator("puppet_master.draw_drags", icon="GREASEPENCIL")
        row = box.row()
        row.template_list("PUPPET_UL_drags", "", props, "drags", props, "active_drag", rows=3)
        col = row.column(align=True)
        col.operator("puppet_master.drag_add", icon="ADD", text="")
        col.operator("puppet_master.drag_from_object", icon="OBJECT_DATA", text="")
        col.operator("puppet_master.drag_remove", icon="REMOVE", text="").index = -1
        if props.active_drag in shot:
            item = props.drags[props.active_drag]
            if not item.source:
                row = box.row(align=True)
                row.prop(item, "timing")
                if item.timing == "CUSTOM":
                    row.prop(item, "progress")
            if item.source:
                box.label(text=f"Drag {shot.index(props.active_drag) + 1} follows {item.source} (frames {item.source_start}-"
                          f"{item.source_start + item.source_frames - 1})", icon="OBJECT_DATA")
            elif len(item.shape) > 2:
                box.label(text=f"Drag {shot.index(props.active_drag) + 1} is curved ({len(item.shape)} points)", icon="IPO_BEZIER")
        if props.drag_warning:
            box.label(text=props.drag_warning, icon="ERROR")
        if props.anchor_warning:
            box.label(text=props.anchor_warning, icon="ERROR")

        box = layout.box()
        box.label(text="Generate", icon="SEQUENCE")
        box.prop(props, "use_scene_settings")
        if props.use_scene_settings:
            row = box.row(align=True)
            row.prop(props, "steps")
            row.prop(props, "guidance")
            row.prop(props, "seed")
        row = box.row(align=True)
        row.prop(props, "variants")
        row.prop(props, "segments")
        box.prop(props, "replace_result")
        row = box.row(align=True)
        row.prop(props, "result_start")
        row.prop(props, "result_hold")
        active = context.scene.name in runtime.STATE.controllers
        if active:
            box.progress(factor=props.job_progress, type="BAR", text=props.job_status_text or props.job_state.title())
            box.operator("puppet_master.cancel", icon="CANCEL")
            if props.preview_image is not None:
                box.template_icon(icon_value=props.preview_image.preview_ensure().icon_id, scale=8.0)
        else:
            box.operator("puppet_master.generate", icon="PLAY")
            if props.job_status_text:
                box.label(text=props.job_status_text)
        if props.job_error:
            col = box.column()
            col.alert = True
            for line in _wrap(props.job_error, 60):
                col.label(text=line)
        if props.job_id:
            row = box.row()
            row.label(text=f"Job {props.job_id[:8]} ({props.job_state.lower()})")
            if not active:
                row.operator("puppet_master.fetch_result", icon="IMPORT", text="Fetch")
        if props.result_folder:
            box.label(text=props.result_folder, icon="FILE_FOLDER")
            if props.result_variants > 1:  # the variants' last frames: click one to put it on the plane
                row = box.row(align=True)
                for index in range(props.result_variants):
                    image = bpy.data.images.get(result_plane.variant_thumbnail_name(props.job_id, index))
                    icon = {"icon_value": image.preview_ensure().icon_id} if image is not None else {}
                    op = row.operator("puppet_master.choose_variant", text=str(index + 1),
                                      depress=index == props.result_variant, **icon)
                    op.index = index
            box.operator("puppet_master.result_to_sequencer", icon="SEQUENCE")

        box = layout.box()
        box.label(text="Backend", icon="LINKED")
        box.operator("puppet_master.ping")
        if runtime.STATE.connection_text:
            for line in _wrap(runtime.STATE.connection_text, 60):
                box.label(text=line)
        for line in runtime.backend_status_lines():
            box.label(text=line)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return [line for paragraph in text.splitlines() for line in (textwrap.wrap(paragraph, width) or [""])]


def draw_status(self, context) -> None:
    scene = context.scene
    if scene is None or scene.name not in runtime.STATE.controllers:
        return
    props = scene.puppet_master
    if props.job_state in job.ACTIVE_STATES:
        self.layout.progress(
            factor=props.job_progress, type="BAR", text=f"Puppet-Master: {props.job_status_text or props.job_state.title()}"
        )


classes = (PUPPET_UL_drags, PUPPET_PT_main)


def register() -> None:
    bpy.types.STATUSBAR_HT_header.append(draw_status)


def unregister() -> None:
    bpy.types.STATUSBAR_HT_header.remove(draw_status)
