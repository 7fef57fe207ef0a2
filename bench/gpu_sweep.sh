#!/usr/bin/env bash
# The GPU figures of the performance targets (bench/README.md), in three parts that each fit a
# 10-minute slot:  bash bench/gpu_sweep.sh sample|baseline|train OUT_DIR
# Each run writes OUT_DIR/<name>.json and .log; a failed or slow run is recorded and the sweep goes on.
set -u
part=${1:?usage: gpu_sweep.sh sample|baseline|train|all [OUT_DIR]}
out=${2:-runs/gpu_sweep}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv > "$out/gpu.csv" 2>&1

run() {  # run NAME LIMIT_S ARGS...: one bench.py call
    local name=$1 limit=$2; shift 2
    echo "== $name: bench.py $*"
    timeout "$limit" python3 bench/bench.py "$@" --json "$out/$name.json" > "$out/$name.log" 2>&1
    echo "   exit $?"; tail -n 12 "$out/$name.log"
}

# Paper evaluation setting: T=243, C=512, L=7, H=20, K=10, flip, 4 windows per call; --check compares
# the sampled poses with fp32 eager (explicit attention) on the same noise.
if [[ $part == sample || $part == all ]]; then
    run eval_bf16_compiled 270 -H 20 -K 10 -B 4 --dtype bf16 --compile --only sample --check --warmup 2 --iters 5
    run eval_fp16_compiled 270 -H 20 -K 10 -B 4 --dtype fp16 --compile --only sample --check --warmup 2 --iters 5
fi
if [[ $part == baseline || $part == all ]]; then
    run eval_bf16_eager 150 -H 20 -K 10 -B 4 --dtype bf16 --only sample --warmup 1 --iters 3
    run eval_fp16_eager 150 -H 20 -K 10 -B 4 --dtype fp16 --only sample --warmup 1 --iters 3
    run eval_fp32_eager 150 -H 20 -K 10 -B 1 --dtype fp32 --only sample --warmup 1 --iters 2
fi
if [[ $part == train || $part == all ]]; then
    # Paper training: batch 4 x 243 (the D3DP recipe), bf16; peak memory is max_memory_allocated.
    run train_b4_bf16_eager 120 -B 4 --dtype bf16 --only train --iters 10
    run train_b4_bf16_compiled 300 -B 4 --dtype bf16 --compile --only train --iters 10
    run train_b16_bf16_compiled 120 -B 16 --dtype bf16 --compile --only train --iters 5
fi
