#!/usr/bin/env bash
# The GPU, measured in one command: train step, time to quality and decoding on Keras' JAX
# backend, on a machine with Python 3.12 and JAX (CUDA) but no TensorFlow and no network.
#
# It needs the checkout and the bundle `make gpu-bundle` writes on a machine with the
# project's venv (.gpu-bundle/: keras 3.15 and keras-hub 0.32 wheels, the few pure ones
# they need, and token ids of the embedded corpus and of gutenberg-large). The wheels go
# into a folder of their own (pip --target, no index, no deps: the machine's numpy, jax,
# h5py... stay as they are), put first on PYTHONPATH. Each benchmark runs in its own
# process under its own time limit (seconds; the three add up to under 5 minutes), so
# that one that hangs or fails leaves the others' figures; time to quality also stops
# each recipe's epochs after --ttq-max-seconds, so that it ends within its limit with
# the epochs it has.
#
# Usage: benchmarks/gpu_suite.sh [--out DIR] [--bundle DIR] [--python PY]
#          [--train-steps 24] [--train-warmup 8] [--train-repeats 3] [--train-variants LIST]
#          [--train-timeout 90] [--ttq-epochs 6] [--ttq-steps-per-epoch N] [--ttq-max-seconds 45]
#          [--ttq-recipes ours,ours_constant_lr] [--ttq-timeout 110] [--decode-tokens 80]
#          [--decode-batch-sizes 1,16] [--decoders LIST] [--decode-repeats 3] [--decode-timeout 90]
# Writes OUT/gpu_suite.json (every figure, versions, each step's status), OUT/gpu_suite.txt
# (the table) and OUT/gpu_suite.log (all that was printed).
set -euo pipefail
cd "$(dirname "$0")/.."

out=outputs/gpu-suite bundle=.gpu-bundle python=python3
train_steps=24 train_warmup=8 train_repeats=3 train_variants=ours,fp32+xla,bf16+spe8 train_timeout=90
ttq_epochs=6 ttq_steps_per_epoch="" ttq_max_seconds=45 ttq_recipes=ours,ours_constant_lr ttq_timeout=110
decode_tokens=80 decode_batch_sizes=1,16 decoders="" decode_repeats=3 decode_timeout=90
while (($#)); do
  case "$1" in
    --out) out=$2 ;;
    --bundle) bundle=$2 ;;
    --python) python=$2 ;;
    --train-steps) train_steps=$2 ;;
    --train-warmup) train_warmup=$2 ;;
    --train-repeats) train_repeats=$2 ;;
    --train-variants) train_variants=$2 ;;
    --train-timeout) train_timeout=$2 ;;
    --ttq-epochs) ttq_epochs=$2 ;;
    --ttq-steps-per-epoch) ttq_steps_per_epoch=$2 ;;
    --ttq-max-seconds) ttq_max_seconds=$2 ;;
    --ttq-recipes) ttq_recipes=$2 ;;
    --ttq-timeout) ttq_timeout=$2 ;;
    --decode-tokens) decode_tokens=$2 ;;
    --decode-batch-sizes) decode_batch_sizes=$2 ;;
    --decoders) decoders=$2 ;;
    --decode-repeats) decode_repeats=$2 ;;
    --decode-timeout) decode_timeout=$2 ;;
    *) sed -n '2,/^set -e/p' "$0" >&2; exit 2 ;;
  esac
  shift 2
done

# The wheels' folder, the benchmarks' own JSONs and JAX's compilation cache: a fresh one each run.
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-suite.XXXXXX")
mkdir -p "$out"
exec > >(tee "$out/gpu_suite.log") 2>&1

"$python" -m pip install --quiet --no-index --no-deps --find-links "$bundle/wheels" --target "$work/site" \
  "$bundle"/wheels/*.whl
export PYTHONPATH="$work/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
# The train step's variants and repeats build the same programs again: compile each once.
export JAX_COMPILATION_CACHE_DIR="$work/jax-cache"

# step NAME SECONDS COMMAND...: runs it under that limit and records its status and wall time.
step() {
  local name=$1 limit=$2 start=$SECONDS rc=0 status=ok
  shift 2
  echo "== $name (at most ${limit} s): $*"
  timeout -k 10 "$limit" "$@" || rc=$?
  if ((rc == 124 || rc == 137)); then status="timeout ${limit}s"; elif ((rc)); then status="failed ($rc)"; fi
  printf '%s\t%s\t%s\n' "$name" "$status" $((SECONDS - start)) >>"$work/steps.tsv"
}

# No GPU that JAX can use: stop here rather than time the CPU.
"$python" benchmarks/gpu_suite.py environment "$work"
step train_step "$train_timeout" "$python" benchmarks/train_step.py --backend jax --tokens "$bundle/embedded.npy" \
  --variants "$train_variants" --steps "$train_steps" --warmup "$train_warmup" --repeats "$train_repeats" \
  --json "$work/train_step.json"
step time_to_quality "$ttq_timeout" "$python" benchmarks/time_to_quality.py --backend jax --tokens "$bundle/gutenberg-large.npy" \
  --recipes "$ttq_recipes" --epochs "$ttq_epochs" ${ttq_steps_per_epoch:+--steps-per-epoch "$ttq_steps_per_epoch"} \
  --max-seconds "$ttq_max_seconds" --json "$work/time_to_quality.json"
step decoding "$decode_timeout" "$python" benchmarks/decoding.py --backend jax --tokens "$decode_tokens" \
  --batch-sizes "$decode_batch_sizes" ${decoders:+--decoders "$decoders"} --repeats "$decode_repeats" \
  --json "$work/decoding.json"
echo
"$python" benchmarks/gpu_suite.py summary "$work" "$out"
