"""The distill section: its own checks, the teacher's shape (from its checkpoint's
kanana.json or a preset), and the vocabulary check that runs before any work."""
import json
from pathlib import Path

import pytest

from megatron_kanana.config.root import TrainConfig, load_config
from megatron_kanana.config.section import ConfigError
from megatron_kanana.models import get_preset
from megatron_kanana.training.distill_config import DistillConfig


def teacher_checkpoint(root: Path, **shape) -> Path:
    """A run root whose `latest` checkpoint holds only kanana.json (enough for the shape)."""
    step = root / "checkpoints" / "iter_0000010"
    step.mkdir(parents=True)
    model = {**get_preset("tiny").to_dict(), **shape}
    (step / "kanana.json").write_text(json.dumps({"model": model, "tokenizer": "tok"}))
    (root / "checkpoints" / "latest").write_text("iter_0000010\n")
    return root


def config(tmp_path: Path, distill: dict) -> TrainConfig:
    return TrainConfig.from_dict({
        "run": {"output_dir": str(tmp_path / "run")}, "model": {"preset": "tiny", "num_layers": 2},
        "data": {"mixture": "m.yaml", "tokenizer": "t.json", "seq_length": 64}, "distill": distill})


def test_teacher_shape_comes_from_its_checkpoint(tmp_path):
    teacher = teacher_checkpoint(tmp_path / "teacher", hidden_size=96, num_layers=6)
    cfg = config(tmp_path, {"teacher": str(teacher)})
    shape = cfg.distill.teacher_shape()
    assert (shape.hidden_size, shape.num_layers) == (96, 6)
    cfg.check(tokenizer_vocab_size=500)
    assert cfg.distill.teacher_checkpoint().name == "iter_0000010"


def test_teacher_model_preset_and_overrides(tmp_path):
    teacher = teacher_checkpoint(tmp_path / "teacher")
    distill = DistillConfig.from_dict({"teacher": str(teacher), "teacher_model": {"num_layers": 8}})
    assert distill.teacher_shape().num_layers == 8 and distill.teacher_shape().hidden_size == 64
    distill = DistillConfig.from_dict({"teacher": "/nowhere", "teacher_model": {"preset": "kanana-8b"}})
    assert distill.teacher_shape() == get_preset("kanana-8b")  # no checkpoint read


def test_vocabulary_mismatch_is_a_config_error(tmp_path):
    teacher = teacher_checkpoint(tmp_path / "teacher", vocab_size=1024)
    cfg = config(tmp_path, {"teacher": str(teacher)})
    with pytest.raises(ConfigError, match=r"vocab_size \(1024\) differs from the student's model.vocab_size \(512\)"):
        cfg.check()


def test_missing_teacher_checkpoint_is_a_config_error(tmp_path):
    cfg = config(tmp_path, {"teacher": str(tmp_path / "absent")})
    with pytest.raises(ConfigError, match="distill.teacher"):
        cfg.check()


@pytest.mark.parametrize("values,message", [
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"kl_weight": 0.0}, "nothing to train on"),
    ({"lm_loss_weight": -1.0}, "must be >= 0"),
    ({"teacher_weights": 1}, "unknown key"),
])
def test_bad_values_name_the_key(tmp_path, values, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, {"teacher": "t", **values})


def test_relative_teacher_path_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "run: {output_dir: run}\nmodel: tiny\ndata: {mixture: m.yaml, tokenizer: t.json}\n"
        "distill: {teacher: runs/teacher}\n")
    assert load_config(tmp_path / "c.yaml").distill.teacher == str(tmp_path / "runs" / "teacher")


def test_no_distill_section_by_default(tmp_path):
    cfg = TrainConfig.from_dict({"run": {"output_dir": "r"}, "model": "tiny",
                                 "data": {"mixture": "m.yaml", "tokenizer": "t.json"}})
    assert cfg.distill is None
