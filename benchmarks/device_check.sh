#!/usr/bin/env bash
# The one command for a lent GPU: every device check, figures into $OUT (JSON + Markdown + logs).
#
#   bash benchmarks/device_check.sh               # on the GPU machine (from the repository root)
#   bash benchmarks/device_check.sh --tiny        # the same script on this CPU with the tiny model
#   bash benchmarks/device_check.sh --prepare     # here, before: fetch the wheels the GPU machine lacks
#
# The GPU machine has PyTorch but not diffusers: `--prepare` downloads diffusers and its one missing
# dependency as wheels into .whl/ (git-ignored), which travel with the working tree; the check
# installs them into a private folder when diffusers is not importable.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p .whl
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl \
        "diffusers==$(grep -oP '^diffusers==\K.*' constraints.txt)" importlib_metadata zipp
    ls .whl
    exit 0
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import diffusers" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --target /tmp/device_check_site .whl/*.whl
    export PYTHONPATH="/tmp/device_check_site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/backend:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/device_check.py --out "${OUT:-device_check_out}" "$@"
