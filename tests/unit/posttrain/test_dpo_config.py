"""The dpo section: its own checks, the one-mode rule and the row-counted batch sizes,
the reference checkpoint (default: checkpoint.load) and its tokenizer check."""
import json
from pathlib import Path

import pytest

from megatron_kanana.training.objectives import objective_class
from megatron_kanana.config.root import TrainConfig, load_config
from megatron_kanana.config.section import ConfigError
from megatron_kanana.posttrain.dpo import DPOConfig, check_reference_tokenizer
from tests.unit.data.conftest import build_hf_tokenizer


def config(tmp_path: Path, dpo: dict | None, **data) -> TrainConfig:
    return TrainConfig.from_dict({
        "run": {"output_dir": str(tmp_path / "run")}, "model": "tiny",
        "data": {"tokenizer": "t.json", "seq_length": 64, "micro_batch_size": 2, "global_batch_size": 4, **data},
        "dpo": dpo})


def test_a_dpo_config_passes_its_checks(tmp_path):
    cfg = config(tmp_path, {"data_prefixes": ["p"], "seq_length": 64, "beta": 0.2})
    cfg.check()
    assert objective_class(cfg)(cfg).model_kernels().lm_head_loss == "unfused"  # the loss needs logits
    assert (cfg.dpo.beta, cfg.dpo.sft_loss_weight, cfg.dpo.reference) == (0.2, 0.0, None)


@pytest.mark.parametrize("data,dpo,message", [
    ({"mixture": "m.yaml"}, {"data_prefixes": ["p"], "seq_length": 64}, r"exactly one of .*\['data.mixture', 'dpo'\]"),
    ({}, {"data_prefixes": ["p"], "seq_length": 32}, r"dpo.seq_length \(32\) != data.seq_length \(64\)"),
    ({"micro_batch_size": 1}, {"data_prefixes": ["p"], "seq_length": 64}, "count rows, two per preference pair"),
    ({"global_batch_size": 6, "micro_batch_size": 3}, {"data_prefixes": ["p"], "seq_length": 64}, "must be even"),
])
def test_cross_section_errors(tmp_path, data, dpo, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, dpo, **data).check()


@pytest.mark.parametrize("values,message", [
    ({"data_prefixes": []}, "data_prefixes: at least one"),
    ({"beta": 0.0}, "beta must be > 0"),
    ({"label_smoothing": 0.5}, r"label_smoothing must be in \[0, 0.5\)"),
    ({"sft_loss_weight": -0.1}, "sft_loss_weight must be >= 0"),
    ({"epochs": 0}, "epochs must be > 0"),
    ({"train_steps": 0}, "train_steps must be >= 1"),
    ({"refrence": "x"}, "unknown key"),
])
def test_bad_values_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        DPOConfig.from_dict({"data_prefixes": ["p"], **values}, prefix="dpo")


def checkpoint(root: Path, tokenizer: str) -> Path:
    step = root / "checkpoints" / "iter_0000004"
    step.mkdir(parents=True)
    (step / "kanana.json").write_text(json.dumps({"model": {}, "tokenizer": tokenizer}))
    (root / "checkpoints" / "latest").write_text("iter_0000004\n")
    return root


def test_reference_defaults_to_checkpoint_load(tmp_path):
    base = checkpoint(tmp_path / "base", "tok")
    dpo = DPOConfig.from_dict({"data_prefixes": ["p"]})
    assert dpo.reference_checkpoint(str(base)).name == "iter_0000004"
    explicit = checkpoint(tmp_path / "other", "tok")
    assert DPOConfig.from_dict({"data_prefixes": ["p"], "reference": str(explicit)}).reference_checkpoint(
        str(base)).parent.parent == explicit
    with pytest.raises(ConfigError, match="set dpo.reference or checkpoint.load"):
        dpo.reference_checkpoint(None)
    with pytest.raises(ConfigError, match="dpo.reference: .*absent"):
        dpo.reference_checkpoint(str(tmp_path / "absent"))


def test_reference_tokenizer_must_match_by_contents(tmp_path):
    for name in "abc":
        (tmp_path / name).mkdir()
    ours = build_hf_tokenizer(tmp_path / "a" / "tokenizer.json", vocab_size=300)
    copy = tmp_path / "b" / "tokenizer.json"
    copy.write_bytes(Path(ours).read_bytes())
    other = build_hf_tokenizer(tmp_path / "c" / "tokenizer.json", vocab_size=400)
    check_reference_tokenizer({"tokenizer": str(copy)}, tmp_path, ours)  # same file, other path: fine
    with pytest.raises(ConfigError, match=f"trained with tokenizer {other}, which differs from data.tokenizer {ours}"):
        check_reference_tokenizer({"tokenizer": str(other)}, tmp_path, ours)
    with pytest.raises(ConfigError, match="records no tokenizer"):
        check_reference_tokenizer({}, tmp_path, ours)
    with pytest.raises(ConfigError, match="dpo.reference: .*is missing"):
        check_reference_tokenizer({"tokenizer": str(tmp_path / "gone.json")}, tmp_path, ours)


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "run: {output_dir: run}\nmodel: tiny\ndata: {tokenizer: t.json}\n"
        "dpo: {data_prefixes: [d/prefs], valid_prefixes: [d/held], reference: runs/sft}\n")
    dpo = load_config(tmp_path / "c.yaml").dpo
    assert dpo.data_prefixes == [str(tmp_path / "d" / "prefs")] and dpo.valid_prefixes == [str(tmp_path / "d" / "held")]
    assert dpo.reference == str(tmp_path / "runs" / "sft")


def test_reference_tokenizer_resolves_against_the_checkpoint_not_the_cwd(tmp_path, monkeypatch, toy_tokenizer,
                                                                        bpe_tokenizer):
    """A converted checkpoint records its tokenizer relative to itself; a `tok.json` in the
    current directory (another tokenizer) must not be picked up instead."""
    import shutil

    from megatron_kanana.posttrain.dpo import check_reference_tokenizer

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    shutil.copy(toy_tokenizer, ckpt / "tok.json")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    shutil.copy(bpe_tokenizer, elsewhere / "tok.json")
    monkeypatch.chdir(elsewhere)
    check_reference_tokenizer({"tokenizer": "tok.json"}, ckpt, toy_tokenizer)  # the checkpoint's own copy
    with pytest.raises(ConfigError, match="differs from data.tokenizer"):
        check_reference_tokenizer({"tokenizer": "tok.json"}, ckpt, bpe_tokenizer)
    with pytest.raises(ConfigError, match="dpo.reference: .*tokenizer .*missing"):
        check_reference_tokenizer({"tokenizer": "gone.json"}, ckpt, toy_tokenizer)
