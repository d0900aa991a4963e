#!/bin/bash
# Tokenize JSONL shards into one megatron-core indexed dataset on a SLURM cluster: a job array of
# `kanana preprocess` tasks (data/preprocess_array.py), each taking a contiguous, byte-balanced
# share of the input files, then one `kanana preprocess-merge` job once every task succeeded.
#
#   INPUT='/data/curated/data/*.jsonl' TOKENIZER=/data/tokenizer OUTPUT_PREFIX=/data/tokens/web \
#       TASKS=64 bash examples/preprocess.sh
#   DRY_RUN=1 INPUT=... TOKENIZER=... OUTPUT_PREFIX=... bash examples/preprocess.sh   # plan only
#
# Each input file becomes OUTPUT_PREFIX.parts/NNNNNN.bin/.idx; a task skips files already done, so
# after a failure submit the same command again (or `sbatch --array=<failed ids>` as printed):
# only unfinished files are redone. The merge is refused until every file is done and writes the
# bytes a single-machine `kanana preprocess` would. TASKS is pinned in OUTPUT_PREFIX.parts/array.json:
# another count, or another input set under the same prefix, is refused.
#
# Environment:
#   INPUT          files or globs (quoted: kanana expands them), on a file system every node sees
#   TOKENIZER      tokenizer.json / SentencePiece .model or its directory
#   OUTPUT_PREFIX  writes OUTPUT_PREFIX.bin/.idx (and OUTPUT_PREFIX.parts/ on the way)
#   TASKS          array size (default 16); WORKERS: processes per task (default: SLURM_CPUS_PER_TASK, else 8)
#   EXTRA_ARGS     more `kanana preprocess` flags (default: --append-eod)
#   SBATCH_ARGS    extra sbatch options, e.g. "--partition=cpu --time=02:00:00"
#   PYTHON         interpreter (default: REPO_DIR/.venv/bin/python, else python3)
#   DRY_RUN=1      print `kanana preprocess --plan` (tasks, files per task, bytes) and the sbatch lines
set -euo pipefail

REPO_DIR=${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
: "${INPUT:?set INPUT to the JSONL files or globs}"
: "${TOKENIZER:?set TOKENIZER to the tokenizer file or directory}"
: "${OUTPUT_PREFIX:?set OUTPUT_PREFIX to the dataset prefix to write}"
TASKS=${TASKS:-16}
WORKERS=${WORKERS:-${SLURM_CPUS_PER_TASK:-8}}
EXTRA_ARGS=${EXTRA_ARGS:---append-eod}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $REPO_DIR/.venv/bin/python ]]; then PYTHON=$REPO_DIR/.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH=$REPO_DIR:$REPO_DIR/kernels${PYTHONPATH:+:$PYTHONPATH}

read -r -a inputs <<< "$INPUT"
read -r -a extra <<< "$EXTRA_ARGS"
kanana=("$PYTHON" -m megatron_kanana.cli)
preprocess=("${kanana[@]}" preprocess --input "${inputs[@]}" --tokenizer "$TOKENIZER"
            --output-prefix "$OUTPUT_PREFIX" --workers "$WORKERS" "${extra[@]}")
task="$(printf '%q ' "${preprocess[@]}")--task-id \$SLURM_ARRAY_TASK_ID --task-count $TASKS"
merge="$(printf '%q ' "${kanana[@]}" preprocess-merge --input "$OUTPUT_PREFIX.parts" --output-prefix "$OUTPUT_PREFIX")"
logs=$(dirname "$OUTPUT_PREFIX")/_logs
common=(--parsable --cpus-per-task="$WORKERS" --output="$logs/%x-%A_%a.out" --chdir="$REPO_DIR")
# shellcheck disable=SC2206  # SBATCH_ARGS is a list of options by design
common+=(${SBATCH_ARGS:-})

if [[ ${DRY_RUN:-0} == 1 ]]; then
    echo "# DRY_RUN=1: the array's split (kanana preprocess --plan), then the jobs this would submit"
    "${preprocess[@]}" --plan --task-count "$TASKS"
    echo "sbatch ${common[*]} --job-name=kanana-preprocess --array=0-$((TASKS - 1)) --wrap \"$task\""
    echo "sbatch ${common[*]} --job-name=kanana-preprocess-merge --dependency=afterok:<array> --wrap \"$merge\""
    exit 0
fi
mkdir -p "$logs"
array=$(sbatch "${common[@]}" --job-name=kanana-preprocess --array="0-$((TASKS - 1))" --wrap "$task")
merged=$(sbatch "${common[@]}" --job-name=kanana-preprocess-merge --dependency="afterok:$array" --wrap "$merge")
echo "preprocess: array $array, merge $merged; writes $OUTPUT_PREFIX.bin/.idx"
