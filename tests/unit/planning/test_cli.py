"""`kanana plan` and `kanana train --dry-run`: the plan of the shipped configs, and bad values exit 2."""
import json

import pytest

from megatron_kanana.cli import main

CONFIGS = ["kanana_8b_stage1", "kanana_26.8b_stage1", "kanana_essence_9.8b_dus", "kanana_nano_2.1b_distill"]


@pytest.mark.parametrize("name", CONFIGS)
def test_dry_run_prints_a_plan_that_fits(name, capsys):
    assert main(["train", f"examples/pretrain/{name}.yaml", "--dry-run"]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("plan:")][0]
    assert "— fits in" in line and "tokens/s/GPU" in line


@pytest.mark.parametrize("override,key", [
    ("parallel.recompute_granularity=full parallel.recompute_method=uniform parallel.recompute_num_layers=33",
     "parallel.recompute_num_layers"),
    ("parallel.fp8=e4m3", "parallel.fp8"),
    ("optim.use_distributed_optimizer=false", "optim.overlap_param_gather"),
])
def test_dry_run_refuses_bad_values_naming_the_key(override, key, capsys):
    assert main(["train", "examples/pretrain/kanana_8b_stage1.yaml", "--dry-run", *override.split()]) == 2
    assert key in capsys.readouterr().err


def test_dry_run_refuses_a_layout_that_cannot_fit(capsys):
    # DP 1: the whole Adam state of 4B parameters per GPU (48 GB) plus 8192-token activations
    assert main(["train", "examples/pretrain/kanana_8b_stage1.yaml", "--dry-run", "parallel.planned_num_gpus=2",
                 "data.global_batch_size=10"]) == 2
    assert "DOES NOT FIT" in capsys.readouterr().out


def test_plan_json_has_byte_counts_and_ranked_alternatives(capsys):
    assert main(["plan", "examples/pretrain/kanana_8b_stage1.yaml", "--gpus", "256", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["num_gpus"] == 256 and plan["config"]["dp"] == 128
    terms = plan["config"]["memory_bytes"]
    assert set(terms) == {"weights", "gradients", "optimizer", "activations", "transient"}
    assert terms["gradients"] == 2 * terms["weights"]  # fp32 main_grad beside bf16 weights
    speeds = [r["tokens_per_s_per_gpu"] for r in plan["alternatives"]]
    assert speeds == sorted(speeds, reverse=True) and all(r["fits"] for r in plan["alternatives"])


def test_plan_of_a_context_parallel_long_context_run(capsys):
    """examples/long_context: 64 GPUs at TP2 × CP8 leave DP 4, and the plan is taken at the
    mixture's longest stage (128K), each CP rank holding 16K tokens of it."""
    config = "examples/long_context/kanana_nano_2.1b_long_context.yaml"
    assert main(["plan", config, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["config"]
    assert row["cp"] == 8 and row["dp"] == 4 and "CP8" in row["layout"]
    assert main(["plan", config, "--json", "parallel.context_parallel_size=4"]) == 0
    half = json.loads(capsys.readouterr().out)["config"]
    assert half["dp"] == 8
    # activations are linear in the tokens a rank holds (flash attention): CP 4 holds twice CP 8's
    assert half["memory_bytes"]["activations"] == pytest.approx(2 * row["memory_bytes"]["activations"], rel=1e-9)
    # the distributed optimizer shards over DP × CP, 32 ranks in both
    assert half["memory_bytes"]["optimizer"] == row["memory_bytes"]["optimizer"]
