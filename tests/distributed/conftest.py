"""Session fixtures shared across test files, so each is trained once per session: the two-stage
TP=2 run with in-training benchmarks (training resume tests, in-training evaluation); a tiny
teacher (distillation, pruning lineage); for the post-training tests (SFT, reward model, DPO,
online DPO) one tiny pre-trained checkpoint, synthetic preference data and one reward model."""
from pathlib import Path

import pytest

from tests.distributed.launch import REPO, kanana
from tests.distributed.stored_curves import check_curve
from tests.distributed.training_setup import make_inputs, write_config

SEQ = 64
LOCAL_TASKS = str(REPO / "megatron_kanana" / "evaluation" / "local_tasks")
TWO_STAGES = "data.stage_steps={stage1: 4, stage2: 2}"
EVALUATION = {"tasks": ["kanana_kmmlu_mini", "kanana_ppl_mini"], "interval": 3, "at_stage_end": True, "limit": 4,
              "batch_size": 4, "bootstrap_iters": 10, "include_path": [LOCAL_TASKS]}


@pytest.fixture(scope="session")
def two_stage_tp2(tmp_path_factory) -> tuple[Path, Path]:
    """(root with the tiny inputs, run): `tiny` at TP=2 on two processes, 4 + 2 steps across
    the stage boundary, benchmarks every 3 steps and at stage ends. Its losses are the stored
    curve recorded without evaluation, so it is also the straight run that resume tests match."""
    root = tmp_path_factory.mktemp("two_stage")
    make_inputs(root)
    run = root / "straight"
    config = write_config(root, run, parallel={"tensor_model_parallel_size": 2}, evaluation=EVALUATION)
    kanana("train", str(config), "--nproc", "2", TWO_STAGES, timeout=300)
    check_curve("pretrain_tp2", run)
    return root, run


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> tuple[Path, Path]:
    """(root with the tiny inputs, teacher run): `tiny` trained 48 steps at TP=2."""
    root = tmp_path_factory.mktemp("teacher")
    make_inputs(root)
    run = root / "teacher"
    kanana("train", str(write_config(root, run, parallel={"tensor_model_parallel_size": 2})), "--nproc", "2",
           "data.stage_steps={stage1: 40, stage2: 8}")
    check_curve("pretrain_teacher_tp2", run)
    return root, run


@pytest.fixture(scope="session")
def preference_root(tmp_path_factory) -> Path:
    """root/base: a tiny model pre-trained 6 steps; root/pref_{train,valid}: preference datasets
    (128 and 32 synthetic pairs, the too-long ones dropped) at seq_length 64."""
    from megatron_kanana.posttrain import preference_synthetic
    from megatron_kanana.posttrain.preference_preprocess import preprocess_pairs

    root = tmp_path_factory.mktemp("posttrain")
    make_inputs(root)
    kanana("train", str(write_config(root, root / "base")), "--nproc", "1", "data.stage_steps={stage1: 4, stage2: 2}")
    check_curve("pretrain_base_tp1", root / "base")
    for name, num, seed in (("train", 128, 0), ("valid", 32, 1)):  # in-process: the CLIs have unit tests
        preference_synthetic.write_jsonl(str(root / f"{name}.jsonl"), num, seed)
        preprocess_pairs([str(root / f"{name}.jsonl")], str(root / "tokenizer.json"), str(root / f"pref_{name}"),
                         seq_length=SEQ)
    return root


REWARD_STEPS = 12


@pytest.fixture(scope="session")
def reward_run(preference_root) -> Path:
    """A reward model trained from root/base at TP=2 for 12 steps of 4 pairs."""
    root = preference_root
    run = root / "rm"
    config = write_config(root, run, parallel={"tensor_model_parallel_size": 2},
                          data={"mixture": None, "micro_batch_size": 4, "global_batch_size": 8},  # rows: 2, 4 pairs
                          checkpoint={"load": str(root / "base"), "load_optimizer": False},
                          reward={"data_prefixes": [str(root / "pref_train")],
                                  "valid_prefixes": [str(root / "pref_valid")],
                                  "seq_length": SEQ, "train_steps": REWARD_STEPS})
    kanana("train", str(config), "--nproc", "2")
    check_curve("reward_tp2", run)
    return run
