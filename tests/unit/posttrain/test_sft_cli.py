"""End to end: `kanana sft-synthetic` then `kanana sft-preprocess`, read back for training; the sft section."""
from __future__ import annotations

import json

import pytest

from megatron_kanana.cli import main
from megatron_kanana.config.section import ConfigError
from megatron_kanana.posttrain import synthetic
from megatron_kanana.posttrain.sft import SFTConfig, build_sft_datasets, sft_steps
from megatron_kanana.posttrain.sft_dataset import SFTDataset
from megatron_kanana.training.data import collate


def test_synthetic_is_deterministic_and_bilingual():
    first = synthetic.conversations(50, seed=3)
    assert first == synthetic.conversations(50, seed=3) and first != synthetic.conversations(50, seed=4)
    answers = [m["content"] for c in first for m in c["messages"] if m["role"] == "assistant"]
    assert any(a.endswith("입니다.") for a in answers) and any(" is " in a for a in answers)


def test_cli_end_to_end(tmp_path, bpe_tokenizer, capsys):
    jsonl, prefix = tmp_path / "toy.jsonl", str(tmp_path / "out" / "toy")
    assert main(["sft-synthetic", "--num", "30", "--output", str(jsonl), "--seed", "1"]) == 0
    with open(jsonl, "a", encoding="utf-8") as f:
        f.write("not json\n")
    args = ["sft-preprocess", "--input", str(jsonl), "--tokenizer", bpe_tokenizer, "--output-prefix", prefix,
            "--seq-length", "128", "--pack", "--truncate"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "31 conversations read, 30 written" in out and f"malformed_json: 1 (e.g. {jsonl}:31:" in out
    meta = json.loads((tmp_path / "out" / "toy_sft.json").read_text())
    assert meta["packed"] and meta["template"] == "plain" and meta["conversations"] == 30
    ds = SFTDataset(prefix, 128)
    assert sum(len(ds.conversations(i)) for i in range(len(ds))) == 30 and len(ds) < 30  # packed
    batch = collate([ds[0], ds[1]])
    assert batch["segment_ids"].shape == (2, 128) and batch["loss_mask"].sum() > 0
    # the same run again must not replace the finished dataset; --strict turns the bad line into an error
    assert main(args) == 1 and "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--strict"]) == 1
    assert f"{jsonl}:31: malformed JSON" in capsys.readouterr().err


def test_sft_section_checks_the_dataset_and_builds_training_samples(tmp_path, bpe_tokenizer):
    jsonl, prefix = tmp_path / "toy.jsonl", str(tmp_path / "toy")
    synthetic.write_jsonl(str(jsonl), 20, seed=0)
    assert main(["sft-preprocess", "--input", str(jsonl), "--tokenizer", bpe_tokenizer, "--output-prefix", prefix,
                 "--seq-length", "96"]) == 0
    cfg = SFTConfig.from_dict({"data_prefixes": [prefix], "seq_length": 96, "epochs": 2})
    assert sft_steps(cfg, global_batch_size=8) == 5  # ceil(2 * 20 / 8)
    train, valid = build_sft_datasets(cfg, seed=0, num_train_samples=40)
    epoch0 = [train[i]["tokens"].tolist() for i in range(20)]
    epoch1 = [train[i]["tokens"].tolist() for i in range(20, 40)]
    assert sorted(epoch0) == sorted(epoch1) and epoch0 != epoch1 and valid == {}
    with pytest.raises(ConfigError, match="sft.pack is True but .* built with False"):
        build_sft_datasets(SFTConfig(data_prefixes=[prefix], seq_length=96, pack=True), 0, 1)
    with pytest.raises(ConfigError, match="on_overlong"):
        SFTConfig.from_dict({"data_prefixes": [prefix], "on_overlong": "cut"})


def test_sft_datasets_record_and_check_their_tokenizer(tmp_path, bpe_tokenizer):
    from megatron_kanana.data.tokenizer import load_tokenizer

    jsonl, prefix = tmp_path / "toy.jsonl", str(tmp_path / "toy")
    synthetic.write_jsonl(str(jsonl), 5, seed=0)
    assert main(["sft-preprocess", "--input", str(jsonl), "--tokenizer", bpe_tokenizer, "--output-prefix", prefix,
                 "--seq-length", "96"]) == 0
    fingerprint = load_tokenizer(bpe_tokenizer).fingerprint
    assert json.loads((tmp_path / "toy_sft.json").read_text())["tokenizer_fingerprint"] == fingerprint
    cfg = SFTConfig(data_prefixes=[prefix], seq_length=96)
    build_sft_datasets(cfg, 0, 5, fingerprint)
    with pytest.raises(ConfigError, match=f"sft: {prefix} was tokenized with .* not with data.tokenizer"):
        build_sft_datasets(cfg, 0, 5, "0" * 64)


def test_kanana_train_refuses_sft_data_of_another_tokenizer_before_launch(tmp_path, bpe_tokenizer, toy_tokenizer,
                                                                         capsys):
    """Checked by the objective's preflight in the launcher's process: no checkpoint is loaded first."""
    import yaml

    jsonl, prefix = tmp_path / "toy.jsonl", str(tmp_path / "toy")
    synthetic.write_jsonl(str(jsonl), 5, seed=0)
    assert main(["sft-preprocess", "--input", str(jsonl), "--tokenizer", bpe_tokenizer, "--output-prefix", prefix,
                 "--seq-length", "64"]) == 0
    config = {"run": {"output_dir": str(tmp_path / "run")}, "model": {"preset": "tiny"},
              "data": {"tokenizer": toy_tokenizer, "seq_length": 64},
              "checkpoint": {"load": str(tmp_path / "no_such_checkpoint")},
              "sft": {"data_prefixes": [prefix], "seq_length": 64}}
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["train", str(tmp_path / "sft.yaml"), "--nproc", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"sft: {prefix} was tokenized with" in err, err
    assert not (tmp_path / "run").exists()


def test_a_failed_preprocessing_leaves_nothing_behind(tmp_path, bpe_tokenizer):
    jsonl, prefix = tmp_path / "bad.jsonl", str(tmp_path / "bad")
    jsonl.write_text('{"messages": [{"role": "robot", "content": "hi"}]}\n')
    assert main(["sft-preprocess", "--input", str(jsonl), "--tokenizer", bpe_tokenizer, "--output-prefix", prefix,
                 "--seq-length", "96", "--strict"]) != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]
