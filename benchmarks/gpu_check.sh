#!/usr/bin/env bash
# The GPU check: on a CUDA machine that has numpy, cupy, torch, pytest and pytest-benchmark but no
# package index (see ../shared/device/README.md), run the test suite on cupy and torch-cuda, the
# gradient checks (the conv nets' too) and the benchmarks (the book's loop through the public API,
# the Trainer's step, the compiled JAX step where JAX sees the GPU, the conv nets' steps), train on
# Fashion-MNIST (SimpleConvNet for one epoch, also in each mixed precision), run `bpcore compare`
# and `bpcore bench` on every GPU backend, and write the JSON and a summary to the folder given as
# the only argument. Meant to finish in under 6 minutes. bpcore's own dependencies must be
# importable there: run ../shared/device/wheels.sh with `tqdm threadpoolctl` as extra arguments if
# the machine lacks them.
set -uo pipefail
out=${1:?usage: benchmarks/gpu_check.sh OUTPUT_FOLDER}
mkdir -p "$out"
cd "$(dirname "$0")/.."
status=0
{
  echo "# bpcore GPU check, $(date -u +%FT%TZ)"
  nvidia-smi -L || true
  python3 -m bpcore info
} | tee "$out/summary.md"

run() {  # name, then the command; appends the result line to the summary
  local name=$1; shift
  local start=$SECONDS
  if "$@" > "$out/$name.log" 2>&1; then
    echo "- $name: ok ($((SECONDS - start)) s): $(tail -n 1 "$out/$name.log")" | tee -a "$out/summary.md"
  else
    status=1
    echo "- $name: FAILED ($((SECONDS - start)) s): $(tail -n 1 "$out/$name.log")" | tee -a "$out/summary.md"
  fi
}

export BPCORE_BACKENDS=cupy,torch
run tests python3 -m pytest -q -x tests
run gradcheck-cupy python3 -m bpcore gradcheck --backend cupy
run gradcheck-torch python3 -m bpcore gradcheck --backend torch --device cuda
for model in convnet deepconvnet; do  # the conv nets, elementwise, and the jax GPU where it is
  run "gradcheck-$model-cupy" python3 -m bpcore gradcheck --model "$model" --backend cupy
  run "gradcheck-$model-torch" python3 -m bpcore gradcheck --model "$model" --backend torch --device cuda
  if python3 -c "import jax; assert jax.devices('gpu')" 2>/dev/null; then
    run "gradcheck-$model-jax" python3 -m bpcore gradcheck --model "$model" --backend jax --device cuda
  fi
done
# bpcore compare and bpcore bench on every GPU backend, NumPy on the CPU beside them: which backend
# departs from float64 NumPy, in which layer and pass (TF32 shows here), and each step's time
# beside PyTorch eager and the book's NumPy code; the sweep shows from which batch size the GPU
# overtakes the CPU. The settings that make float32 products TF32 are in the JSON's environment.
gpus="cupy,torch:cuda"
if python3 -c "import jax; assert jax.devices('gpu')" 2>/dev/null; then gpus="$gpus,jax:cuda"; fi
for model in mlp convnet; do
  run "compare-$model" bash -c "python3 -m bpcore compare --model $model \
    --backends numpy,$gpus --json > '$out/compare-$model.json'"
done
# cuDNN's convolution and pooling behind the torch layers (bpcore.kernels), and the layers' own
# Array API code on the same GPU, each against float64 NumPy.
run compare-convnet-reference bash -c "python3 -m bpcore compare --model convnet \
  --backends numpy,$gpus --reference-kernels --json > '$out/compare-convnet-reference.json'"
run bench-quick bash -c "python3 -m bpcore bench --quick --backends numpy,torch,$gpus \
  --json --plot '$out/bench-quick.png' > '$out/bench-quick.json'"
run bench-sweep bash -c "python3 -m bpcore bench --models mlp --batch-sizes 1,10,100,1000,10000 \
  --rounds 3 --backends numpy,$gpus --json --plot '$out/bench-sweep.png' > '$out/bench-sweep.json'"
run bench python3 -m pytest -q benchmarks/test_step.py benchmarks/test_layers.py \
  --benchmark-enable --benchmark-min-rounds=3 --benchmark-max-time=0.2 \
  --benchmark-json="$out/gpu.json"
if python3 -c "import jax; assert jax.devices('gpu')" 2>/dev/null; then
  # JAX on the GPU: the book's loop eagerly and compile_step's one program, beside the floor.
  run bench-jax env BPCORE_BACKENDS=jax python3 -m pytest -q benchmarks/test_step.py \
    -k "bpcore or floor" --benchmark-enable --benchmark-min-rounds=3 \
    --benchmark-max-time=0.2 --benchmark-json="$out/gpu-jax.json"
  run train-digits-jax python3 -m bpcore train --backend jax --device cuda --json --quiet
fi
run bench-conv python3 -m pytest -q benchmarks/test_conv_step.py \
  --benchmark-enable --benchmark-json="$out/gpu-conv.json"
# Fashion-MNIST when its files were brought along (BPCORE_DATA or --data-dir), else the digits.
if python3 -c "from bpcore.datasets import load_fashion_mnist as f; f(download=False)" 2>/dev/null; then
  run train-fashion-cupy python3 -m bpcore train --dataset fashion-mnist --hidden 256 --epochs 10 \
    --backend cupy --json --quiet
  run train-fashion-convnet-cupy python3 -m bpcore train --dataset fashion-mnist --model convnet \
    --epochs 1 --backend cupy --json --quiet
else
  echo "- Fashion-MNIST files not found here: training the embedded digits instead" | tee -a "$out/summary.md"
  run train-digits-cupy python3 -m bpcore train --backend cupy --json --quiet
fi
# Mixed precision (tensor cores): SimpleConvNet one epoch in float32 and in each mixed precision
# the backend has (CuPy has no bfloat16), on each GPU backend; the JSON lines give the accuracy
# and the samples per second side by side.
dataset=digits
if python3 -c "from bpcore.datasets import load_fashion_mnist as f; f(download=False)" 2>/dev/null; then
  dataset=fashion-mnist
fi
targets="cupy:cuda:0 torch:cuda:0"
if python3 -c "import jax; assert jax.devices('gpu')" 2>/dev/null; then targets="$targets jax:cuda:0"; fi
for target in $targets; do
  backend=${target%%:*}; device=${target#*:}
  for precision in float32 mixed_float16 mixed_bfloat16; do
    [ "$backend/$precision" = cupy/mixed_bfloat16 ] && continue
    flag=(); [ "$precision" = float32 ] || flag=(--precision "$precision")
    run "train-convnet-$backend-$precision" python3 -m bpcore train --dataset "$dataset" \
      --model convnet --epochs 1 --backend "$backend" --device "$device" "${flag[@]}" --json --quiet
  done
done
exit $status
