# shellcheck shell=bash
# What every task's scripts/train.sh and scripts/evaluate*.sh share: sourced, not run. A task script keeps only
# which of its environment variables become which flags:
#
#   source "$(cd "$(dirname "$0")/../.." && pwd)/tools/preset_lib.sh"
#   USAGE_ENV="[DATA_PATH=D] [LLM_PATH=L]"          # the task's variables, for the usage line
#   task_args() { need_arg --data-path DATA_PATH "ImageNet root"; }   # PRESET and CONFIG are set when it runs
#   train_main image_cls "$@"                       # PRESET torchrun|slurm [TRAIN ARGS...]
#
# train_main: ARGS = --config CONFIG, task_args, --output-dir RUNS/PRESET[/seedN] [--seed N] [--llm-path LLM_PATH
# unless the preset's llm_variant is none]; launched by tools/dist_train.sh or tools/slurm_train.sh (JOB_NAME=PRESET).
# evaluate_main TASK RESULTS "$@" (RUN|CHECKPOINT [ARGS...]): a run directory -> its config.yaml, best.pth,
# RUN/RESULTS; a checkpoint file -> PRESET's config, checkpoint_args CKPT RESULTS_FILE (the task's), --llm-path.
# LAUNCHER python (default) | torchrun | slurm (JOB_NAME=evaluate).
# run_command prints the command line with DRY_RUN=1 (unset inputs as $NAME placeholders), otherwise exec's it.
#
# Environment read here: DRY_RUN, RUNS, SEED, LLM_PATH, PRESET and LAUNCHER (evaluate), PYTHON (python launcher).
# Errors are one line on stderr and exit status 2.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ARGS=()

die() {
    echo "error: $*" >&2
    exit 2
}

# usage_error TAIL: the usage line (the script's USAGE_ENV variables, then TAIL) on stderr, exit 2.
usage_error() {
    echo "usage: ${USAGE_ENV:+$USAGE_ENV }$1" >&2
    exit 2
}

# preset_config TASK NAME: CONFIG=<repo>/TASK/configs/NAME.yaml, or an error naming the missing file.
preset_config() {
    CONFIG="$REPO_ROOT/$1/configs/$2.yaml"
    [ -f "$CONFIG" ] || die "no preset $CONFIG (see $1/scripts/paper_rows.txt)"
}

# choose_launcher KIND JOB_NAME ALLOWED...: LAUNCH=(the command an entry module follows); KIND must be ALLOWED.
#   python: one process (PYTHON -m); torchrun: tools/dist_train.sh; slurm: tools/slurm_train.sh under JOB_NAME.
choose_launcher() {
    local kind=$1 job=$2
    shift 2
    local allowed="$*"
    if [[ " $allowed " != *" $kind "* ]]; then
        local but_last=${allowed% *}
        die "launcher must be ${but_last// /, } or ${allowed##* }, got '$kind'"
    fi
    case "$kind" in
        python) LAUNCH=("${PYTHON:-python}" -m) ;;
        torchrun) LAUNCH=("$REPO_ROOT/tools/dist_train.sh") ;;
        slurm) LAUNCH=(env JOB_NAME="$job" "$REPO_ROOT/tools/slurm_train.sh") ;;
        *) die "unknown launcher '$kind'" ;;
    esac
}

# need_arg FLAG NAME WHY: append FLAG and the value of env var NAME to ARGS; unset, DRY_RUN appends the
# placeholder $NAME instead and a real run stops with "PRESET needs NAME=<WHY>".
need_arg() {
    local flag=$1 name=$2 why=$3
    if [ -n "${!name:-}" ]; then ARGS+=("$flag" "${!name}")
    elif [ -n "${DRY_RUN:-}" ]; then ARGS+=("$flag" "\$$name")
    else die "${PRESET:-this run} needs $name=<$why>"
    fi
}

# opt_arg FLAG NAME: append FLAG and the value of env var NAME to ARGS when NAME is set (non-empty).
opt_arg() {
    local flag=$1 name=$2
    if [ -n "${!name:-}" ]; then ARGS+=("$flag" "${!name}"); fi
}

# llm_args: --llm-path LLM_PATH when CONFIG's llm_variant is not none (mlp / random_* read only its config).
llm_args() {
    local variant
    variant=$(sed -n 's/^llm_variant: *\([a-z_]*\).*/\1/p' "$CONFIG")
    if [ "$variant" != none ]; then need_arg --llm-path LLM_PATH "LLaMA-7B checkpoint (llm_variant $variant)"; fi
}

# run_command MODULE [EXTRA ARGS...]: LAUNCH MODULE ARGS EXTRA; DRY_RUN=1 prints it (placeholders unquoted).
run_command() {
    local module=$1
    shift
    local cmd=("${LAUNCH[@]}" "$module" "${ARGS[@]}" "$@")
    if [ -n "${DRY_RUN:-}" ]; then
        printf '%q ' "${cmd[@]}" | sed 's/\\\$\([A-Z_0-9]*\)/$\1/g; s/ $//'
        echo
        exit 0
    fi
    export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"   # entry points are modules of the repository root
    exec "${cmd[@]}"
}

# train_main TASK PRESET torchrun|slurm [TRAIN ARGS...]: a task's scripts/train.sh (calls its task_args).
train_main() {
    local task=$1
    shift
    [ $# -ge 2 ] || usage_error "[RUNS=R] [SEED=N] [DRY_RUN=1] $0 PRESET torchrun|slurm [TRAIN ARGS...]"
    PRESET=$1
    preset_config "$task" "$PRESET"
    choose_launcher "$2" "$PRESET" torchrun slurm
    shift 2
    ARGS=(--config "$CONFIG")
    task_args
    ARGS+=(--output-dir "${RUNS:-runs/$task}/$PRESET${SEED:+/seed$SEED}")
    opt_arg --seed SEED
    llm_args
    run_command "$task.train" "$@"
}

# evaluate_main TASK RESULTS RUN|CHECKPOINT [ARGS...]: a task's scripts/evaluate.sh (calls its checkpoint_args
# CHECKPOINT RESULTS_FILE for a released checkpoint). ARGS may already hold the task's leading flags.
evaluate_main() {
    local task=$1 results=$2
    shift 2
    [ $# -ge 1 ] || usage_error "[PRESET=P] [LAUNCHER=L] [DRY_RUN=1] $0 RUN|CHECKPOINT [ARGS...]"
    local run=$1
    shift
    if [ -d "$run" ]; then
        ARGS+=(--config "$run/config.yaml" --resume "$run/best.pth" --results "$run/$results")
    else
        [ -n "${PRESET:-}" ] || die "evaluating a checkpoint file needs PRESET=<$task/configs name>"
        preset_config "$task" "$PRESET"
        ARGS+=(--config "$CONFIG")
        checkpoint_args "$run" "${run%.*}_$results"
        llm_args
    fi
    choose_launcher "${LAUNCHER:-python}" evaluate python torchrun slurm
    run_command "$task.evaluate" "$@"
}
