#!/usr/bin/env bash
# The GPU check: one command, at most 8 minutes, for the day a CUDA GPU is lent.
#
#   benchmarks/gpu_check.sh                 # on a CUDA machine: the full check
#   benchmarks/gpu_check.sh --device cpu    # the reduced form (CI): small corpus, tiny settings, 1 step
#
# Run from anywhere; it works in the repository root with `python3` (or $PYTHON), which needs
# torch, numpy, scipy, pandas, tqdm, scikit-learn and pytest, and nothing installed from a
# registry. It measures what `reproduce` runs (`benchmarks/bench_paper.py`): the study's own jobs,
# with the profile's precision (bf16 autocast), compile mode (the paper profile: CUDA graphs),
# checkpoint cadence and runs per device, smoke-limited to a few steps. On CUDA it:
#   1. runs the CUDA-only tests (those skipped on a machine without CUDA);
#   2. writes a full-size synthetic corpus (43,101 records of the real data set's shape) and
#      prepares it, runs both main pre-trainings (a whole GPU each), then K fine-tunings at once
#      (the families in turn; K = the profile's runs_per_device), each with one evaluation and one
#      checkpoint, and prints per stage: steps/s, syncs per step (syncs.count_ops and the CUDA sync
#      debug mode), peak GPU memory beside the estimate, the projected H100-hours of the main study
#      and of the study with Fig. 3 beside the FLOP floor, with the card's name.
# Options: --device cuda|cpu, --records N (default 43101 on CUDA, 300 on the CPU), --steps N
# (default 8 on CUDA, 1 on the CPU), --runs-per-device K (default the profile's), --set KEY=VALUE
# (repeatable, as `reproduce --set` takes it, e.g. --set pretrain.compile=off; default the
# profile's own values), --out DIR (default a temporary folder, removed), --json FILE.
# Each part runs under a time limit so that the whole stays within 8 minutes.
set -euo pipefail

DEVICE=cuda RECORDS="" STEPS="" OUT="" JSON="" K=""
SETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --records) RECORDS="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --runs-per-device) K="$2"; shift 2 ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --json) JSON="$2"; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$DEVICE" in cuda|cuda:*|cpu) ;; *) echo "gpu_check.sh: --device must be cuda or cpu, got $DEVICE" >&2; exit 2 ;; esac

cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
TMP=""
if [ -z "$OUT" ]; then TMP="$(mktemp -d -t gpu_check.XXXXXX)"; OUT="$TMP"; trap 'rm -rf "$TMP"' EXIT; fi
START=$(date +%s) FAILED=0

if [ "$DEVICE" = cpu ]; then
  # reduced form: a small corpus of the real shape, the tiny profile's batches and head, one step
  : "${RECORDS:=300}" "${STEPS:=1}"
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  PROFILE=tiny LIMIT=600 WORKERS=2
else
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_check.sh: CUDA is not available here (use --device cpu for the reduced form)" >&2; exit 2; }
  : "${RECORDS:=43101}" "${STEPS:=8}"
  PROFILE=paper LIMIT=420
  WORKERS=$(nproc 2>/dev/null || echo 4); [ "$WORKERS" -gt 16 ] && WORKERS=16
  # K compiling processes at once share the host's cores: one inductor compile thread each
  export TORCHINDUCTOR_COMPILE_THREADS="${TORCHINDUCTOR_COMPILE_THREADS:-1}"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  echo "== CUDA-only tests"
  timeout 60 "$PY" -m pytest -q -p no:cacheprovider -rs \
    tests/test_transforms.py::test_views_on_cuda_with_a_cpu_generator_equal_the_cpu_views \
    tests/test_windows.py::test_corpus_on_cuda_gives_the_cpu_windows_for_a_cpu_generator \
    || { echo "gpu_check.sh: the CUDA-only tests FAILED (going on with the smoke)" >&2; FAILED=1; }
fi

echo "== what reproduce runs, on $DEVICE: profile $PROFILE, $RECORDS records, $STEPS step(s) per stage"
LEFT=$(( LIMIT - ($(date +%s) - START) ))
# the stages get LEFT - 20 s, the report the rest (a stage cut off is reported as failed, the others shown)
timeout "$LEFT" "$PY" benchmarks/bench_paper.py --device "$DEVICE" --records "$RECORDS" --steps "$STEPS" \
  --profile "$PROFILE" --workers "$WORKERS" --out "$OUT/bench" --time-limit $(( LEFT - 20 )) \
  ${K:+--runs-per-device "$K"} ${SETS[@]+"${SETS[@]}"} ${JSON:+--json "$JSON"} \
  || FAILED=1
echo "gpu_check.sh: done in $(( $(date +%s) - START )) s$([ "$FAILED" = 1 ] && echo ', with FAILURES above')"
exit "$FAILED"
