"""Add-on preferences: backend endpoint and key, local backend launch, output folder, defaults."""




import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty

from ..core._light import ADDON_PACKAGE
from . import runtime


class PUPPET_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    endpoint: StringProperty(
        name="Backend Endpoint", default="tcp://127.0.0.1:5555",
        description="ZeroMQ endpoint of `puppet-master serve`",
    )  # fmt: skip
    server_key: StringProperty(
        name="Server Public Key", default="",
        description="The server's CurveZMQ public key (40 characters, or the path of its .key file); empty for a loopback server",
    )  # fmt: skip
    backend_python: StringProperty(
        name="Backend Python", default="", subtype="FILE_PATH",
        description="Python executable of an environment where the puppet-master package is installed",
    )  # fmt: skip
    backend_model_args: StringProperty(
        name="Model Options", default="",
        description="Options passed to `puppet-master serve` to choose the model, e.g. --model DIR or --tiny; "
        "empty: the installed default model (Download Model installs it)",
    )  # fmt: skip
    backend_memory: EnumProperty(
        name="GPU Memory",
        items=(
            ("AUTO", "Automatic", "Picked from the GPU's free memory when the backend starts"),
            ("high", "High", "Fastest: everything on the GPU"),
            ("balanced", "Balanced", "One model on the GPU at a time, guidance branches in turn"),
            ("low", "Low", "Layer-by-layer offload: the least GPU memory, the slowest"),
        ),
        default="AUTO",
        description="The memory preset of the local backend (`serve --memory`)",
    )  # fmt: skip
    download_args: StringProperty(
        name="Download Options", default="",
        description="Extra options for `puppet-master download`, e.g. --dtype bfloat16 or --svd-repo for a mirror",
    )  # fmt: skip
    output_folder: StringProperty(
        name="Output Folder", default="//puppet_master", subtype="DIR_PATH",
        description="Where generated frames go (// is the .blend's folder; unsaved files use a temp folder)",
    )  # fmt: skip
    default_steps: IntProperty(name="Steps", default=25, min=1, max=200)
    default_guidance: FloatProperty(
        name="Guidance", default=0.0, min=0.0, max=50.0,
        description="Guidance of the last frame (the first has 1); 0: the model's own (5 for Puppet-Master, 1 for the bundled tiny model)",
    )
    default_seed: IntProperty(name="Seed", default=0, min=0)

    def draw(self, context) -> None:
        layout = self.layout
        box = layout.box()
        box.label(text="Backend")
        box.prop(self, "endpoint")
        box.prop(self, "server_key")
        row = box.row()
        row.operator("puppet_master.ping", icon="LINKED")
        info = runtime.STATE.connection_text
        if info:
            box.label(text=info)
        box = layout.box()
        box.label(text="Local Backend")
        box.prop(self, "backend_python")
        box.prop(self, "backend_model_args")
        box.prop(self, "backend_memory")
        row = box.row()
        row.operator("puppet_master.backend_start", icon="PLAY")
        row.operator("puppet_master.backend_stop", icon="SNAP_FACE")
        for line in runtime.backend_status_lines():
            box.label(text=line)
        self._draw_models(layout.box())
        box = layout.box()
        box.label(text="Output and Defaults")
        box.prop(self, "output_folder")
        row = box.row()
        row.prop(self, "default_steps")
        row.prop(self, "default_guidance")
        row.prop(self, "default_seed")


    def _draw_models(self, box) -> None:
        from ..core import model_download

        box.label(text="Model")
        status = runtime.STATE.download.status
        row = box.row()
        if status.active:
            row.operator("puppet_master.model_download_cancel", icon="CANCEL")
            box.progress(factor=status.fraction, text=status.text or "Downloading...")
        else:
            row.operator("puppet_master.model_download", icon="IMPORT")
            row.operator("puppet_master.models_refresh", icon="FILE_REFRESH")
            if status.text:
                box.label(text=status.text)
        for line in status.error.splitlines()[-6:]:
            box.label(text=line, icon="ERROR")
        box.prop(self, "download_args")
        models = runtime.STATE.models
        if models.pending:
            box.label(text="Asking the backend which models are installed...")
        elif models.error:
            box.label(text=models.error, icon="ERROR")
        elif models.known:
            for line in model_download.model_lines(models.models):
                box.label(text=line)


def get(context=None) -> PUPPET_AP_preferences:
    context = context or bpy.context
    return context.preferences.addons[ADDON_PACKAGE].preferences



classes = (PUPPET_AP_preferences,)
