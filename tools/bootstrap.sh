#!/usr/bin/env bash
# Set up (or refresh) the mmsnip development environment, idempotently.
#
#   bash tools/bootstrap.sh            # used by `make demo` and `make test`
#
# Creates $MMSNIP_VENV (default: .venv) with torch 2.13.0 (CPU wheel),
# mmcv 2.1.0 built from source *with ops* (the wheel is cached in
# $MMSNIP_CACHE, default ~/.cache/mmsnip, so it is built once per machine),
# mmengine 0.10.7, mmdet 3.3.0, openmim, the test requirements and mmsnip
# itself. Everything comes from PyPI. A stamp file records what was installed;
# a second run with unchanged requirements only checks the stamp.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${MMSNIP_VENV:-$ROOT/.venv}
CACHE=${MMSNIP_CACHE:-$HOME/.cache/mmsnip}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${MMSNIP_TORCH:-2.13.0}
MMCV_VERSION=2.1.0

log() { printf '[bootstrap] %s\n' "$*" >&2; }

stamp_inputs=("$ROOT"/requirements/*.txt "$ROOT/setup.py" "$ROOT/setup.cfg" "$0")
stamp=$(cat "${stamp_inputs[@]}" | sha256sum | cut -c1-16)-torch$TORCH_VERSION
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.mmsnip-stamp" 2>/dev/null)" = "$stamp" ] \
   && "$VENV/bin/python" -c 'import mmcv.ops, mmdet, mmsnip' 2>/dev/null; then
    log "environment $VENV is up to date"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

# Pinned pip and setuptools: see requirements/build.txt.
log "installing build requirements and torch $TORCH_VERSION (CPU)"
pip install -q -r "$ROOT/requirements/build.txt"
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    pip install -q "torch==$TORCH_VERSION"
fi

# mmcv 2.1.0 is a source-only package on PyPI. Build isolation would build it
# without ops, so build against the installed torch and cache the wheel.
if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
    # The ops link against torch: one cache folder per (python, torch).
    pyver=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    wheel_dir="$CACHE/$pyver-torch$TORCH_VERSION"
    mkdir -p "$wheel_dir"
    wheel=$(ls "$wheel_dir"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$wheel" ]; then
        log "building mmcv $MMCV_VERSION with ops from source (about 15 minutes on 2 cores, once per machine)"
        build=$(mktemp -d)
        MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
            pip wheel --no-deps --no-build-isolation -w "$build" "mmcv==$MMCV_VERSION" \
            >"$build/build.log" 2>&1 || { tail -n 40 "$build/build.log"; exit 1; }
        built=$(ls "$build"/mmcv-*.whl)
        # Copy then rename: an interrupted run never leaves a half-written wheel.
        cp "$built" "$wheel_dir/.partial" && mv "$wheel_dir/.partial" "$wheel_dir/$(basename "$built")"
        wheel="$wheel_dir/$(basename "$built")"
        rm -rf "$build"
    fi
    log "installing mmcv from $wheel"
    pip install -q --no-deps "$wheel"
fi

log "installing mmengine, mmdet, openmim and test requirements"
pip install -q -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt" \
    "mmcv==$MMCV_VERSION" "openmim==0.3.9" "torch==$TORCH_VERSION"
# mmcv's runtime deps (addict, yapf, ...) are not pulled by a --no-deps install.
pip install -q addict packaging pyyaml yapf

# Legacy `setup.py develop` editable install: it links configs/ and tools/
# into mmsnip/.mim and registers the repository itself as the package
# location, which `mim train/test mmsnip` need (a PEP 660 install hides it).
log "installing mmsnip (editable)"
pip install -q --no-build-isolation --no-use-pep517 -e "$ROOT"
"$VENV/bin/python" -c 'import mmcv.ops, mmdet, mmsnip; print("[bootstrap] ok: mmcv", mmcv.__version__, "mmdet", mmdet.__version__, "mmsnip", mmsnip.__version__)'
echo "$stamp" >"$VENV/.mmsnip-stamp"
