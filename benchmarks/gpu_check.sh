#!/usr/bin/env bash
# Issue 11's GPU checks as one prepared command, for a session that is lent a GPU machine (BENCHMARKS.md,
# "Asynchronous checkpoints"). That machine has torch but no network and older transformers and huggingface_hub, so:
#   benchmarks/gpu_check.sh download   here: wheels of the tested versions, for the GPU image's Python, into .whl/
#   benchmarks/gpu_check.sh run [ARG…]  there, with .whl carried: the GPU tests, then the asynchronous-save
#                                      benchmark in bf16 (ARG… passed on to it, e.g. --quick), then the 135m preset
#                                      in bf16 (tokens/s and MFU against the bare loop and transformers.Trainer, the
#                                      background save's throughput ratio, checkpoints, memory, LoRA; issue 28); logs
#                                      and the results JSON go to $OUT (default: /tmp/azr-gpu-check)
# AZR_CHECK_PYTHON (default 3.12, the image's) and AZR_CHECK_DEVICE (default cuda) let it be tried on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
# What the package, its tests and the benchmarks need beyond the image's torch, numpy and pytest.
PACKAGES="transformers huggingface_hub httpx2 httpcore2 truststore click hf-xet tokenizers safetensors peft accelerate
tqdm"

case "${1:-}" in
  download)
    pinned=$(python -m pip freeze | grep -i -E "^($(echo $PACKAGES | tr ' ' '|' | tr '_' '.'))==")
    rm -rf "$WHEELS"
    echo "$pinned" | python -m pip download -q --no-deps --only-binary :all: --dest "$WHEELS" \
      --python-version "${AZR_CHECK_PYTHON:-3.12}" --implementation cp --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -r /dev/stdin
    grep -q -x "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >> .git/info/exclude
    ls "$WHEELS"
    ;;
  run)
    out=${OUT:-/tmp/azr-gpu-check}
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --target /tmp/azr-site "$WHEELS"/*.whl
    export PYTHONPATH="/tmp/azr-site:$PWD" PYTHONUNBUFFERED=1
    python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/test_gpu.log" || true
    python3 -m benchmarks --device "${AZR_CHECK_DEVICE:-cuda}" --precision bf16 --only async_saves \
      --output "$out/results_gpu_async_saves.json" "${@:2}" 2>&1 | tee "$out/benchmark.log"
    python3 -m benchmarks --device "${AZR_CHECK_DEVICE:-cuda}" --precision bf16 --only 135m --repeats 3 \
      --output "$out/results_gpu_135m.json" 2>&1 | tee "$out/benchmark_135m.log"
    ;;
  *)
    echo "usage: benchmarks/gpu_check.sh download|run" >&2
    exit 2
    ;;
esac
