#!/usr/bin/env bash
# Fetch, on a machine with PyPI access, the wheels a bare GPU image lacks (diffusers and its
# importlib_metadata; torch, accelerate, safetensors and huggingface-hub are usually there) into
# .whl/, for copying to a GPU machine that has no internet. Python 3.12, x86-64.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "diffusers==$(python3 -c 'import diffusers; print(diffusers.__version__)')" \
    "importlib_metadata==$(python3 -c 'import importlib_metadata as m; print(m.version("importlib_metadata"))')"
ls -l .whl
# There: python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
