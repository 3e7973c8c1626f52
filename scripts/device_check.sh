#!/usr/bin/env bash
# GPU check of arraynet in one short run (about 5-7 minutes on an H100/H200): the GPU-marked
# kernel tests (pytest -m gpu on tests/test_kernels.py and tests/test_cuda_kernels.py), the
# GPU, parity of every zoo layout (NumPy against CuPy, CuPy with arraynet's own CUDA kernels
# and torch on CUDA), the own CUDA kernels against CuPy's default kernels operation by
# operation (scripts/bench_kernels.py at batch 64 and 512: ms per call and max|diff|), m12
# training/evaluation images/s on CuPy (default and own CUDA kernels) and on torch CUDA
# tensors (arraynet's layers, torch's kernels) beside PyTorch eager at batch 16 and 128,
# column sums as sum(axis=0) against products with ones, host against device random
# numbers, and 3 epochs of m12 on CuPy (`--train-kernels cuda`: with the own CUDA kernels).
# `--tf32 1` runs float32 products and convolutions in TF32 (arraynet and PyTorch alike;
# default: plain float32). Everything goes into ONE file, $OUT/device_check.json (default
# runs/device_check/), rewritten after every step.
#
#   bash scripts/device_check.sh                 # on a CUDA machine
#   bash scripts/device_check.sh --cpu           # NumPy and cuda-on-cpu, tiny sizes (~1-2 min)
#   bash scripts/device_check.sh --help          # sizes and steps (scripts/device_check.py)
#
# On the device machine (the `run` tool). Its python3 has NumPy, CuPy (cuda13), PyTorch,
# typer, rich and safetensors, but neither array-api-compat, array-api-strict nor pytest, and
# it gets only the working tree (not ../shared), so wheels and MNIST travel as carried
# folders. Once, here, in the repo root:
#
#   mkdir -p .git/info .wheels .mnist && printf '/.wheels/\n/.mnist/\n' >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_17_x86_64 -d .wheels \
#       array-api-compat==1.16.0 array-api-strict==2.6.1 \
#       pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 packaging==26.4 pygments==2.21.0
#   cp ../shared/data/mnist/*.gz .mnist/
#
# (pytest and its dependencies are pure-Python py3-none-any wheels, for the gpu_tests step;
# pytest 9 also needs pygments. Without them that step records "pytest is not installed"
# and the others run.) Then call the tool with
#
#   run(command="bash scripts/device_check.sh", carry=[".wheels", ".mnist"], timeout_s=480)
#
# and read device_check.json from the reply's files_at (it is rewritten after every step, so
# a run cut at the limit loses only its last steps: rng and train come last). (add
# `safetensors==0.8.0` to the download only if the device image ever lacks it.) Sizes can be
# cut for a tighter lease, e.g. `bash scripts/device_check.sh --bench-steps 50 --epochs 2
# --kernel-batches 512`, or steps picked: `--steps gpu_tests,device,parity,kernels,bench`.
#
# What this wrapper does: (a) installs any wheels found in .wheels/, .whl/ or shared/wheels/
# into a temporary folder on PYTHONPATH (pip --no-index --target; plain unzip if pip fails);
# (b) points ARRAYNET_DATA at MNIST ($ARRAYNET_DATA, else .mnist/, shared/data/mnist or
# ../shared/data/mnist); (c) runs scripts/device_check.py with this script's arguments,
# using the repo's .venv python when there is one, else python3 (override with PYTHON=...).
set -u

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"; else PY=python3; fi
fi

# (a) carried wheels
SITE=""
wheels=()
for d in "$REPO/.wheels" "$REPO/.whl" "$REPO/shared/wheels"; do
    [ -d "$d" ] && for w in "$d"/*.whl; do [ -f "$w" ] && wheels+=("$w"); done
done
if [ "${#wheels[@]}" -gt 0 ]; then
    SITE="$(mktemp -d "${TMPDIR:-/tmp}/arraynet-device-check-site.XXXXXX")" || exit 2
    echo "[device_check.sh] installing ${#wheels[@]} carried wheel(s) into $SITE" >&2
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "${wheels[@]}" >/dev/null 2>&1; then
        echo "[device_check.sh] pip unavailable or failed; unzipping the wheels instead" >&2
        for w in "${wheels[@]}"; do "$PY" -m zipfile -e "$w" "$SITE" || exit 2; done
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

# (b) MNIST
if [ -z "${ARRAYNET_DATA:-}" ]; then
    for d in "$REPO/.mnist" "$REPO/shared/data/mnist" "$REPO/../shared/data/mnist"; do
        if ls "$d"/train-images-idx3-ubyte* >/dev/null 2>&1; then
            export ARRAYNET_DATA="$(cd "$d" && pwd)"
            break
        fi
    done
fi
echo "[device_check.sh] python: $PY; ARRAYNET_DATA=${ARRAYNET_DATA:-<not found>}" >&2

# (c) the check
export PYTHONUNBUFFERED=1
export DEVICE_CHECK_COMMAND="bash scripts/device_check.sh${*:+ $*}"
"$PY" "$REPO/scripts/device_check.py" "$@"
rc=$?
[ -n "$SITE" ] && rm -rf "$SITE"
exit $rc
