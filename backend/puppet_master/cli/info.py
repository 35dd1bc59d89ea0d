"""``puppet-master info``: versions, the torch device, and where weights are looked for."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys

from puppet_master import __version__, paths


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def collect_info() -> dict:
    """Everything ``info`` reports, as a JSON-serialisable dict."""
    import torch

    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s))"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = "cpu"
    return {
        "puppet-master": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {
            name: _version(name)
            for name in ("torch", "diffusers", "transformers", "safetensors", "numpy", "pyzmq", "accelerate")
        },
        "device": device,
        "weights": [{"source": label, "path": str(path), "exists": path.exists()}
                    for label, path in paths.weight_search_paths()],
        "results_dir": str(paths.results_dir()),
        "examples": sorted(str(p) for p in paths.EXAMPLES_DIR.glob("*.png")),
        "models": installed_models(),
    }


def installed_models() -> list[dict]:
    """The pipeline folders under the models folder: name, size on disk, dtype, sources and licences
    (from their manifest), and which one is the default."""
    from puppet_master.conversion import MANIFEST_FILE
    from puppet_master.loading import default_model

    default = default_model()
    found = []
    folders = sorted(p for p in paths.models_dir().iterdir() if (p / "model_index.json").is_file()) \
        if paths.models_dir().is_dir() else []
    for folder in folders:
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            manifest = {}
        sources = manifest.get("sources", {})
        found.append({
            "name": folder.name, "path": str(folder),
            "bytes": sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()),
            "dtype": manifest.get("dtype"),
            "sources": {k: f"{v.get('repo')}@{str(v.get('revision', ''))[:12]}" for k, v in sources.items()},
            "licences": manifest.get("licences", []),
            "default": default is not None and folder.resolve() == default.resolve(),
        })
    return found


def run(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"puppet-master {info['puppet-master']} (Python {info['python']}, {info['platform']})")
    for name, version in info["versions"].items():
        print(f"  {name:<13} {version}")
    print(f"torch device: {info['device']}")
    print("weights are looked for in:")
    for entry in info["weights"]:
        mark = "found" if entry["exists"] else "missing"
        print(f"  {entry['source']:<36} {entry['path']} ({mark})")
    print(f"results folder: {info['results_dir']}")
    for example in info["examples"]:
        print(f"example image: {example}")
    if not info["models"]:
        print("installed models: none (`puppet-master download` installs the default one)")
    for model in info["models"]:
        mark = " (default)" if model["default"] else ""
        print(f"installed model {model['name']}{mark}: {model['bytes'] / 1e9:.2f} GB, {model['dtype'] or 'dtype unknown'}, "
              f"{model['path']}")
        for role, source in model["sources"].items():
            print(f"  {role}: {source}")
        for licence in model["licences"]:
            print(f"  licence: {licence}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="print versions, the torch device and where weights are looked for")
    parser.add_argument("--json", action="store_true", help="print as JSON")
    parser.set_defaults(func=run)
