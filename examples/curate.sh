#!/bin/bash
# Curate a directory of JSONL shards on a SLURM cluster: the passes of `kanana curate` as job
# arrays chained by dependencies (curation/array.py), as datatrove runs MinHash dedup:
#   1. signatures  array over the shards   (normalise + MinHash, per shard)
#   2. buckets     array over hash buckets (documents sharing a hash, per bucket)
#   3. reduce      one small job            (clusters, keep/drop per document)
#   4. filter      array over the shards   (language, heuristics, PII, quality, per shard)
#
#   INPUT=/data/raw OUTPUT=/data/curated TASKS=256 BUCKETS=32 bash examples/curate.sh
#   DRY_RUN=1 INPUT=... OUTPUT=... bash examples/curate.sh   # the plan and the sbatch lines; submits nothing
#
# Run it on a login node; it submits four jobs and returns. Every task skips the shards (or
# buckets) whose done-marker exists, so after a failure submit the same command again (or
# only the failed indices: `sbatch --array=3,7 ...` as printed): only unfinished work is
# redone. The task count is passed explicitly (not SLURM_ARRAY_TASK_COUNT, which a partial
# resubmission changes) and pinned in OUTPUT/_work/arrays/: another TASKS or BUCKETS for the
# same OUTPUT is refused, since the shards would move between tasks.
#
# Environment:
#   INPUT, OUTPUT    shard directory and output directory, on a file system every node sees
#   CONFIG           pipeline YAML (default: examples/curation/kanana_pipeline.yaml)
#   TASKS            tasks of the shard arrays (default 16); BUCKETS: of the bucket array (default 8)
#   WORKERS          worker processes per task (default: SLURM_CPUS_PER_TASK, else 8)
#   SBATCH_ARGS      extra sbatch options, e.g. "--partition=cpu --account=data --time=04:00:00"
#   PYTHON           interpreter (default: REPO_DIR/.venv/bin/python, else python3)
#   DRY_RUN=1        print `kanana curate --plan` (tasks, shards per task, bytes) and the sbatch lines
set -euo pipefail

REPO_DIR=${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
: "${INPUT:?set INPUT to the directory of .jsonl/.jsonl.gz shards}"
: "${OUTPUT:?set OUTPUT to the output directory}"
CONFIG=${CONFIG:-$REPO_DIR/examples/curation/kanana_pipeline.yaml}
TASKS=${TASKS:-16}
BUCKETS=${BUCKETS:-8}
WORKERS=${WORKERS:-${SLURM_CPUS_PER_TASK:-8}}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $REPO_DIR/.venv/bin/python ]]; then PYTHON=$REPO_DIR/.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH=$REPO_DIR:$REPO_DIR/kernels${PYTHONPATH:+:$PYTHONPATH}

kanana=("$PYTHON" -m megatron_kanana.cli curate --config "$CONFIG" --input "$INPUT" --output "$OUTPUT"
        --workers "$WORKERS")
# The command one task runs; \$SLURM_ARRAY_TASK_ID is expanded on the compute node.
task_command() {
    local stage=$1 count=$2
    printf '%q ' "${kanana[@]}" --stage "$stage"
    if [[ $stage != reduce ]]; then printf -- '--task-id $SLURM_ARRAY_TASK_ID --task-count %d' "$count"; fi
}

# submit NAME DEPENDENCY ARRAY STAGE COUNT: prints the job id (or, in a dry run, the sbatch line).
submit() {
    local name=$1 dependency=$2 array=$3 stage=$4 count=$5
    local args=(--parsable --job-name="kanana-curate-$name" --cpus-per-task="$WORKERS"
                --output="$OUTPUT/_logs/%x-%A_%a.out" --chdir="$REPO_DIR")
    [[ -n $dependency ]] && args+=(--dependency="afterok:$dependency")
    [[ -n $array ]] && args+=(--array="$array")
    # shellcheck disable=SC2206  # SBATCH_ARGS is a list of options by design
    args+=(${SBATCH_ARGS:-} --wrap "$(task_command "$stage" "$count")")
    if [[ ${DRY_RUN:-0} == 1 ]]; then
        echo "sbatch ${args[*]}" >&2
        echo "<$name>"
    else
        sbatch "${args[@]}"
    fi
}

if [[ ${DRY_RUN:-0} == 1 ]]; then
    echo "# DRY_RUN=1: the shard arrays' split (kanana curate --plan), then the jobs this would submit"
    "${kanana[@]}" --plan --task-count "$TASKS"
    echo "# hash buckets: $BUCKETS tasks over every shard's signatures"
else
    mkdir -p "$OUTPUT/_logs"
fi
signatures=$(submit signatures "" "0-$((TASKS - 1))" signatures "$TASKS")
buckets=$(submit buckets "$signatures" "0-$((BUCKETS - 1))" buckets "$BUCKETS")
reduce=$(submit reduce "$buckets" "" reduce 1)
filter=$(submit filter "$reduce" "0-$((TASKS - 1))" filter "$TASKS")
echo "curate: jobs $signatures -> $buckets -> $reduce -> $filter; results in $OUTPUT (stats.json when done)"
