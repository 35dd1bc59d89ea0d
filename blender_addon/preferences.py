"""Add-on preferences: backend endpoint and key, local backend launch, output folder, defaults."""




import bpy
from bpy.props import FloatProperty, IntProperty, StringProperty

from . import runtime


class PUPPET_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

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
        name="Model Options", default="--tiny",
        description="Options passed to `puppet-master serve` to choose the model, e.g. --model DIR",
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
        row = box.row()
        row.operator("puppet_master.backend_start", icon="PLAY")
        row.operator("puppet_master.backend_stop", icon="SNAP_FACE")
        for line in runtime.backend_status_lines():
            box.label(text=line)
        box = layout.box()
        box.label(text="Output and Defaults")
        box.prop(self, "output_folder")
        row = box.row()
        row.prop(self, "default_steps")
        row.prop(self, "default_guidance")
        row.prop(self, "default_seed")


def get(context=None) -> PUPPET_AP_preferences:
    context = context or bpy.context
    return context.preferences.addons[__package__].preferences



classes = (PUPPET_AP_preferences,)
