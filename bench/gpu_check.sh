#!/usr/bin/env bash
# The GPU checks of issue 15, in one run of under 8 minutes on a machine with CUDA:
#   1. tests/gpu (marked `gpu`): unload while held, cuda:0 by UUID, NVML v2 against
#      mem_get_info, the pool's own overhead, no cache after a converting load, parallel
#      loads' footprints, one page-locked buffer reused, the warm tier's bandwidth;
#   2. the GPU rows of bench/load_restore.py: pinned host<->device copies (the limits,
#      measured in the same run), load disk -> cuda:0, offload to host and restore, each
#      as a whole move and as the copy alone;
#   3. bench/gpu_probes.py: NVML against torch, device by device.
# Every figure goes into one folder: $OUT when set, else bench/results/gpu. Each step has
# its own time limit (240 + 180 + 45 s). Without CUDA it says it skipped and exits 0.
#
#   bench/gpu_check.sh            (PYTHON=... to choose the interpreter)
set -uo pipefail

cd "$(dirname "$0")/.."
if [[ -n "${PYTHON:-}" ]]; then
    python=$PYTHON
elif [[ -x .venv/bin/python ]]; then
    python=.venv/bin/python
else
    python=python3
fi
folder=${OUT:-bench/results/gpu}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1

if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
    >/dev/null 2>&1; then
    echo "gpu_check: skipped: no CUDA device here (torch missing or torch.cuda.is_available() is false)"
    exit 0
fi

mkdir -p "$folder"
failed=()
started=$SECONDS

step() {  # step NAME LIMIT COMMAND...: run one check, its output kept in the folder
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit}s)"
    local begun=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$folder/$name.txt"
    local status=${PIPESTATUS[0]}
    echo "== $name: exit $status after $((SECONDS - begun))s" | tee -a "$folder/summary.txt"
    if [[ $status -eq 5 && $name == tests_gpu ]]; then
        echo "== tests_gpu: no test ran (every module skipped: see tests_gpu.txt)" \
            | tee -a "$folder/summary.txt"
    fi
    if [[ $status -ne 0 ]]; then
        failed+=("$name")
    fi
}

: >"$folder/summary.txt"
nvidia-smi >"$folder/nvidia-smi.txt" 2>&1 || echo "nvidia-smi not available" >"$folder/nvidia-smi.txt"
step tests_gpu 240 "$python" -m pytest tests/gpu -m gpu -q -rs -s -p no:cacheprovider \
    --junitxml="$folder/tests_gpu.xml"
step load_restore 180 "$python" bench/load_restore.py --gpu-only --out "$folder"
step gpu_probes 45 "$python" bench/gpu_probes.py --out "$folder"

echo "gpu_check: $((SECONDS - started))s in all; figures in $folder" | tee -a "$folder/summary.txt"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "gpu_check: FAILED: ${failed[*]}" | tee -a "$folder/summary.txt"
    exit 1
fi
echo "gpu_check: all passed" | tee -a "$folder/summary.txt"
