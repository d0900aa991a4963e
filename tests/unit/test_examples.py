"""The shipped examples stay launchable: every SLURM script names a config that resolves and
whose parallel layout fits the script's GPU count; every mixture parses; the inferred 26.8B
shape has 26.8B parameters."""
from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from megatron_kanana.config.root import load_config
from megatron_kanana.config.section import ConfigError
from megatron_kanana.data.mixture import load_mixture
from megatron_kanana.parallel.config import check_layout

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# curate.sh / preprocess.sh submit CPU data arrays, not training: tests/unit/test_data_scripts.py
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.sh")
                 if p.name not in ("slurm_common.sh", "posttrain.sh", "curate.sh", "preprocess.sh", "long_context.sh"))
POSTTRAIN = EXAMPLES / "posttrain.sh"  # one script, STAGE=sft|reward|dpo|online_dpo picks the config
LONG_CONTEXT = EXAMPLES / "long_context.sh"  # one run whose mixture stages change the length and RoPE
CONFIGS = sorted((EXAMPLES / "pretrain").glob("*.yaml"))
MIXTURES = sorted((EXAMPLES / "mixtures").glob("*.yaml")) + sorted((EXAMPLES / "demo").glob("mixture*.yaml"))


def sbatch_option(script: Path, name: str) -> str:
    values = re.findall(rf"^#SBATCH\s+--{name}=(\S+)", script.read_text(), flags=re.M)
    assert len(values) == 1, f"{script.name}: expected one '#SBATCH --{name}=' line, found {values}"
    return values[0]


def script_config(script: Path) -> Path:
    names = re.findall(r"kanana_launch\s+(\S+\.yaml)", script.read_text())
    assert len(names) == 1, f"{script.name}: expected one `kanana_launch CONFIG` call, found {names}"
    return REPO / names[0]


def world_size(script: Path) -> int:
    return int(sbatch_option(script, "nodes")) * int(sbatch_option(script, "ntasks-per-node"))


def test_every_config_has_a_script():
    assert SCRIPTS and CONFIGS
    launched = {script_config(s) for s in SCRIPTS}
    assert launched == set(CONFIGS), f"configs without a script: {set(CONFIGS) - launched}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_resolves_and_fits_its_allocation(script: Path):
    config = script_config(script)
    assert config.is_file(), f"{script.name} launches {config}, which does not exist"
    cfg = load_config(config)
    cfg.check(tokenizer_vocab_size=128256)  # the Llama-3 tokenizer
    gpus_per_node = int(sbatch_option(script, "gpus-per-node"))
    assert gpus_per_node == int(sbatch_option(script, "ntasks-per-node")), "one task per GPU"
    layout = check_layout(cfg.parallel, cfg.model, world_size(script), "cuda")
    assert cfg.parallel.tensor_model_parallel_size <= gpus_per_node, "TP must stay inside a node"
    cfg.data.accumulation_steps(layout.data)  # raises unless the batch splits over DP ranks
    assert cfg.data.seq_length == 8192 and cfg.optim.bf16 is True
    assert cfg.optim.z_loss_coef == 5e-6 and cfg.optim.independent_weight_decay == 1e-4


def test_sequence_parallel_with_the_fused_lm_head_is_refused_naming_both_keys():
    """The fused head needs every token on every TP rank: refused at config time, not at model
    build on the cluster (the shipped SP configs choose the unfused loss)."""
    cfg = load_config(EXAMPLES / "pretrain" / "kanana_8b_stage1.yaml", ["kernels.lm_head_loss=fused"])
    with pytest.raises(ConfigError, match=r"kernels.lm_head_loss.*parallel.sequence_parallel"):
        cfg.check()


@pytest.mark.parametrize("size, overrides", [("nano", []), ("essence", [
    "model={preset: kanana-essence-9.8b}", "parallel.tensor_model_parallel_size=4"])])
@pytest.mark.parametrize("stage", ["sft", "reward", "dpo", "online_dpo"])
def test_posttrain_stage_configs_fit_one_node(stage: str, size: str, overrides: list):
    """Each post-training stage's config, at the shape and layout examples/posttrain.sh gives
    it (SIZE=nano as written; SIZE=essence with its overrides), checks and fits 8 GPUs."""
    text = POSTTRAIN.read_text()
    assert 'kanana_launch "examples/posttrain/$STAGE.yaml"' in text and f"{stage})" in text
    for override in overrides:
        assert override in text, override
    cfg = load_config(EXAMPLES / "posttrain" / f"{stage}.yaml", overrides)
    cfg.check(tokenizer_vocab_size=128256)
    assert getattr(cfg, stage) is not None and cfg.optim.bf16 is True
    layout = check_layout(cfg.parallel, cfg.model, world_size(POSTTRAIN), "cuda")
    cfg.data.accumulation_steps(layout.data)


@pytest.mark.parametrize("script", SCRIPTS + [POSTTRAIN, LONG_CONTEXT], ids=lambda p: p.name)
def test_script_saves_on_preemption_and_parses(script: Path):
    text = script.read_text()
    assert re.search(r"^#SBATCH\s+--signal=USR1@\d+", text, flags=re.M), "no USR1 warning before the end"
    assert re.search(r"^#SBATCH\s+--requeue", text, flags=re.M)
    assert "slurm_common.sh" in text
    bash = shutil.which("bash")
    assert bash, "bash is needed to check the scripts"
    for path in (script, EXAMPLES / "slurm_common.sh"):
        result = subprocess.run([bash, "-n", str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_stage_schedules_are_valid_at_their_real_length(config: Path):
    """The trainer replaces schedule.train_steps by each stage's step count; warm-up and the
    DeepSeek drops must still be valid then (plan_stages needs real datasets, so mirror it)."""
    cfg = load_config(config)
    mixture = load_mixture(cfg.data.mixture)
    names = [s.name for s in mixture.stages]
    if cfg.data.stage_schedule == "restart":
        names = cfg.data.stages or names
    steps = {n: cfg.data.steps_for(n, mixture.stage(n).token_budget) for n in names}
    for name, n in steps.items():
        cfg.schedule.replace(train_steps=n)  # validates
    if cfg.data.stage_schedule == "continue":
        assert cfg.schedule.train_steps == sum(steps.values()), (
            f"schedule.train_steps ({cfg.schedule.train_steps}) should state the derived total "
            f"{sum(steps.values())} ({steps})")


def test_8b_stages_share_one_schedule():
    """Stage 2 continues stage 1's schedule only when both derive the same step counts."""
    one, two = (load_config(EXAMPLES / "pretrain" / f"kanana_8b_stage{i}.yaml") for i in (1, 2))
    assert one.data.stages == ["stage1"] and two.data.stages == ["stage2"]
    assert one.data.stage_schedule == two.data.stage_schedule == "continue"
    for key in ("mixture", "seq_length", "global_batch_size"):
        assert getattr(one.data, key) == getattr(two.data, key), key
    assert one.schedule == two.schedule and one.model == two.model
    assert two.checkpoint.load and two.checkpoint.load.endswith("/checkpoints")
    # The 90% DeepSeek drop falls at the stage boundary (2.7T of 3T tokens).
    stage1 = math.ceil(2.7e12 / (one.data.global_batch_size * one.data.seq_length))
    assert abs(round(0.9 * one.schedule.train_steps) - stage1) <= 1


def test_dus_mixture_is_100b_plus_100b_of_the_3t_shares():
    dus, full = load_mixture(EXAMPLES / "mixtures" / "kanana_dus_200b.yaml"), \
        load_mixture(EXAMPLES / "mixtures" / "kanana_3t.yaml")
    assert [s.token_budget for s in dus.stages] == [100 * 10**9, 100 * 10**9]
    for name in ("stage1", "stage2"):
        assert dus.stage(name).category_shares() == pytest.approx(full.stage(name).category_shares())


def test_inferred_26_8b_shape_has_26_8b_parameters():
    cfg = load_config(EXAMPLES / "pretrain" / "kanana_26.8b_stage1.yaml")
    assert abs(cfg.model.parameters / 26.8e9 - 1) < 0.01, cfg.model.parameters


@pytest.mark.parametrize("mixture", MIXTURES, ids=lambda p: p.name)
def test_mixture_parses(mixture: Path):
    mix = load_mixture(mixture)
    for stage in mix.stages:
        assert sum(stage.shares()) == pytest.approx(1.0)


def test_long_context_configs_resolve_and_fit_64_gpus():
    """8K -> 32K (theta kept) and 32K -> 128K with Kanana-1.5's published YaRN setting, each a run of
    its own whose mixture stage sets the length and RoPE."""
    from megatron_kanana.models import rope
    from megatron_kanana.training.stages import start_shape

    long32k = load_config(EXAMPLES / "long_context" / "kanana_nano_2.1b_32k.yaml")
    yarn = load_config(EXAMPLES / "long_context" / "kanana_nano_2.1b_128k_yarn.yaml")
    shapes = {}
    for name, cfg in (("long32k", long32k), ("long128k", yarn)):
        cfg.check(tokenizer_vocab_size=128256)
        layout = check_layout(cfg.parallel, cfg.model, cfg.parallel.planned_num_gpus, "cuda")
        cfg.data.accumulation_steps(layout.data)
        assert cfg.data.stages == [name]
        stage = stage_shapes_of(cfg)[name]
        assert stage.seq_length == stage.model.max_position_embeddings
        assert start_shape(cfg.data, cfg.model)[0] == stage.model  # the model the run is built with
        shapes[name] = stage.model
    assert (shapes["long32k"].rope_scaling, shapes["long32k"].rotary_base) == (None, 500000)
    assert rope.to_hf(shapes["long128k"].rope_scaling, 500000.0)["rope_scaling"] == {
        "rope_type": "yarn", "factor": 4.4, "original_max_position_embeddings": 32768,
        "beta_fast": 64.0, "beta_slow": 2.0}
    # each run starts where the previous one's window ended
    rope.check_context_extension(shapes["long32k"].to_dict(), shapes["long128k"].to_dict(), "the 32K run")
    assert rope.is_context_extension(shapes["long32k"].to_dict(), shapes["long128k"].to_dict())


def stage_shapes_of(cfg):
    from megatron_kanana.training.stages import stage_shapes

    return stage_shapes(load_mixture(cfg.data.mixture), cfg.data.mixture, cfg.data, cfg.model,
                        cfg.parallel.context_parallel_size)


def test_long_context_script_runs_both_stages_in_one_run_with_cp_and_sp():
    config = script_config(LONG_CONTEXT)
    cfg = load_config(config)
    cfg.check(tokenizer_vocab_size=128256)
    assert cfg.parallel.context_parallel_size > 1 and cfg.parallel.sequence_parallel
    layout = check_layout(cfg.parallel, cfg.model, world_size(LONG_CONTEXT), "cuda")
    assert layout.data * cfg.parallel.tensor_model_parallel_size * cfg.parallel.context_parallel_size == 64
    cfg.data.accumulation_steps(layout.data)
    shapes = stage_shapes_of(cfg)  # every stage's length divides by 2 × CP and fits its window
    assert cfg.data.stages == ["long32k", "long128k"]
    assert [shapes[n].seq_length for n in cfg.data.stages] == [32768, 131072]
    assert shapes["long128k"].model.rope_scaling.rope_type == "yarn"
    mixture = load_mixture(cfg.data.mixture)
    for name in cfg.data.stages:  # a restarted schedule is valid at each stage's real length
        steps = cfg.data.steps_for(name, mixture.stage(name).token_budget, shapes[name].seq_length)
        cfg.schedule.replace(train_steps=steps)
    assert cfg.checkpoint.load and "checkpoint.load=$BASE_DIR/checkpoints" in LONG_CONTEXT.read_text()
