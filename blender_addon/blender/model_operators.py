"""Download Model, Cancel Download and Refresh Installed Models (the preferences' Model box).

Thin: the child process and its events are :mod:`model_download`; the timer in :mod:`runtime`
polls them.
"""

from __future__ import annotations

import shlex

import bpy

from ..core import model_download
from . import preferences, runtime


class PUPPET_OT_model_download(bpy.types.Operator):
    """Download Stable Video Diffusion and the released Puppet-Master weights and install them as the default model (`puppet-master download`, run by the backend Python; the hub's own login is used for the gated repository)"""

    bl_idname = "puppet_master.model_download"
    bl_label = "Download Model"

    def execute(self, context):
        prefs = preferences.get(context)
        try:
            extra = shlex.split(prefs.download_args)
        except ValueError as exc:
            self.report({"ERROR"}, f"cannot parse the download options {prefs.download_args!r}: {exc}")
            return {"CANCELLED"}
        try:
            runtime.STATE.download.start(prefs.backend_python, extra)
        except model_download.DownloadError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        runtime.ensure_timer()
        self.report({"INFO"}, "Model download started")
        return {"FINISHED"}


class PUPPET_OT_model_download_cancel(bpy.types.Operator):
    """Stop the model download; the finished files are kept and the next Download Model goes on from them"""

    bl_idname = "puppet_master.model_download_cancel"
    bl_label = "Cancel Download"

    def execute(self, context):
        if not runtime.STATE.download.status.active:
            self.report({"WARNING"}, "no model download is running")
            return {"CANCELLED"}
        runtime.STATE.download.cancel()
        runtime.ensure_timer()
        return {"FINISHED"}


class PUPPET_OT_models_refresh(bpy.types.Operator):
    """Ask the backend Python which models are installed (`puppet-master info`)"""

    bl_idname = "puppet_master.models_refresh"
    bl_label = "Refresh Installed Models"

    def execute(self, context):
        try:
            runtime.STATE.models.refresh(preferences.get(context).backend_python)
        except model_download.DownloadError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        runtime.ensure_timer()
        return {"FINISHED"}


classes = (PUPPET_OT_model_download, PUPPET_OT_model_download_cancel, PUPPET_OT_models_refresh)
