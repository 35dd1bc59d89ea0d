"""Build the installable Blender extension zip.

    python tools/build_extension.py --output-dir DIR [--blender-ext PATH] [--wheel-cache DIR]

1. check the manifest (its version must equal ``puppet_master.__version__``),
2. download the pyzmq wheels the manifest lists into a cache folder (pip, binary only),
3. stage the add-on source, the manifest, the wheels and the light shared modules
   (``backend/puppet_master/{drags,endpoints,protocol,events,client}.py`` -> ``vendor/puppet_master_light/``),
4. run Blender's extension CLI: ``build``, then ``validate`` on the zip.

Plain Python 3.11+; needs pip and Blender's ``blender_ext.py`` (found beside the ``bpy`` module).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDON_DIR = ROOT / "blender_addon"
MANIFEST = ROOT / "blender_manifest.toml"
LIGHT_SOURCE = ROOT / "backend" / "puppet_master"
#: the light shared modules copied into the extension
LIGHT_MODULES = ("drags", "endpoints", "protocol", "events", "client")
LIGHT_PACKAGE = Path("vendor") / "puppet_master_light"
DEFAULT_WHEEL_CACHE = ADDON_DIR / "wheels"
#: seconds one ``pip download`` may take
PIP_TIMEOUT_S = 300

# wheel platform tag -> a pip ``--platform`` value that selects it
_PIP_PLATFORMS = {
    "manylinux": "manylinux_2_28_x86_64",
    "win_amd64": "win_amd64",
    "macosx": "macosx_11_0_arm64",
}


class BuildError(RuntimeError):
    """The extension could not be built; the message names the step and the problem."""


def find_blender_ext() -> Path:
    """Blender's extension CLI, from the installed ``bpy`` module (no import of bpy itself)."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("cannot find the bpy module to locate blender_ext.py; pass --blender-ext PATH")
    bpy_dir = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise BuildError(f"no blender_ext.py under {bpy_dir}; pass --blender-ext PATH")
    return found[-1]


def read_manifest() -> dict:
    manifest = tomllib.loads(MANIFEST.read_text())
    sys.path.insert(0, str(ROOT / "backend"))
    try:
        from puppet_master import __version__
    finally:
        sys.path.pop(0)
    if manifest.get("version") != __version__:
        raise BuildError(f"blender_manifest.toml version {manifest.get('version')} != puppet_master {__version__}")
    return manifest


def _pip_arguments(wheel_name: str) -> tuple[str, str, str]:
    """``(requirement, python_version, platform)`` for pip download from a wheel file name."""
    parts = wheel_name[: -len(".whl")].split("-")
    if len(parts) != 5:
        raise BuildError(f"unexpected wheel file name {wheel_name!r}")
    name, version, python_tag, _abi, platform_tag = parts
    match = re.fullmatch(r"cp(\d)(\d+)", python_tag)
    if match is None:
        raise BuildError(f"cannot read the Python version of {wheel_name!r}")
    pip_platform = next((v for k, v in _PIP_PLATFORMS.items() if platform_tag.startswith(k)), None)
    if pip_platform is None:
        raise BuildError(f"no pip platform known for {wheel_name!r}")
    return f"{name}=={version}", f"{match.group(1)}.{match.group(2)}", pip_platform


def fetch_wheels(wheels: list[str], cache: Path) -> list[Path]:
    """Download each listed wheel into ``cache`` unless it is already there."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for entry in wheels:
        name = Path(entry).name
        target = cache / name
        if not target.exists():
            requirement, python_version, platform = _pip_arguments(name)
            command = [
                sys.executable, "-m", "pip", "download", requirement, "--only-binary=:all:", "--no-deps",
                "--platform", platform, "--python-version", python_version, "--dest", str(cache), "--quiet",
            ]  # fmt: skip
            print(f"downloading {name}")
            result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
            if result.returncode != 0 or not target.exists():
                raise BuildError(f"pip could not download {name}:\n{result.stdout}{result.stderr}")
        paths.append(target)
    return paths


def stage(staging: Path, wheel_files: list[Path]) -> None:
    """Lay out the extension source folder: the add-on package (its ``blender/`` and ``core/``
    folders), the manifest, the wheels and the light modules."""
    for source in sorted(ADDON_DIR.rglob("*.py")):
        relative = source.relative_to(ADDON_DIR)
        if relative.parts[0] in ("wheels", "vendor") or "__pycache__" in relative.parts:
            continue
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, staging / relative)
    shutil.copy2(MANIFEST, staging / "blender_manifest.toml")
    wheels_dir = staging / "wheels"
    wheels_dir.mkdir()
    for wheel in wheel_files:
        shutil.copy2(wheel, wheels_dir / wheel.name)
    light = staging / LIGHT_PACKAGE
    light.mkdir(parents=True)
    (staging / "vendor" / "__init__.py").write_text('"""Third-party-style copies bundled into the extension."""\n')
    (light / "__init__.py").write_text(
        '"""Byte-identical copies of puppet_master light modules (drags, protocol, client)."""\n'
    )
    for name in LIGHT_MODULES:
        source = LIGHT_SOURCE / f"{name}.py"
        if not source.exists():
            raise BuildError(f"light module {source} is missing")
        shutil.copyfile(source, light / source.name)


def run_cli(blender_ext: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, str(blender_ext), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"blender_ext.py {args[0]} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def build(output_dir: Path, blender_ext: Path | None = None, wheel_cache: Path = DEFAULT_WHEEL_CACHE) -> Path:
    """Build and validate the extension zip in ``output_dir``; returns its path."""
    manifest = read_manifest()
    blender_ext = blender_ext or find_blender_ext()
    wheel_files = fetch_wheels(manifest.get("wheels", []), wheel_cache)
    output_dir.mkdir(parents=True, exist_ok=True)
    zip_path = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    with tempfile.TemporaryDirectory(prefix="puppet_master_ext_") as tmp:
        staging = Path(tmp) / manifest["id"]
        staging.mkdir()
        stage(staging, wheel_files)
        run_cli(blender_ext, "build", "--source-dir", str(staging), "--output-filepath", str(zip_path))
    run_cli(blender_ext, "validate", str(zip_path))
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Puppet-Master Blender extension zip.")
    parser.add_argument("--output-dir", type=Path, required=True, help="folder for the zip")
    parser.add_argument("--blender-ext", type=Path, help="path to Blender's blender_ext.py (default: beside bpy)")
    parser.add_argument("--wheel-cache", type=Path, default=DEFAULT_WHEEL_CACHE, help="download cache for wheels")
    args = parser.parse_args(argv)
    try:
        zip_path = build(args.output_dir, args.blender_ext, args.wheel_cache)
    except (BuildError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built and validated {zip_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
