"""Importance arithmetic (surgery/importance.py) and the scores file."""
from __future__ import annotations

import math

import pytest
import torch

from megatron_kanana.config.section import ConfigError
from megatron_kanana.models import get_preset
from megatron_kanana.surgery import importance as imp
from megatron_kanana.surgery.scores_file import check_matches, read_scores, write_scores


def test_sequence_then_batch_rules():
    x = torch.tensor([[[1.0, -2.0]], [[3.0, 0.0]]]).repeat(1, 2, 1)  # [seq 2, batch 2, n 2]
    x[:, 1] *= 2
    mean_seq = imp.per_sample(imp.channel_magnitude(x), "mean")            # [[2, 1], [4, 2]]
    assert mean_seq.tolist() == [[2.0, 1.0], [4.0, 2.0]]
    l2_seq = imp.per_sample(imp.channel_magnitude(x), "l2")
    assert l2_seq[0].tolist() == pytest.approx([math.sqrt(10), 2.0])
    stat = imp.batch_statistic(mean_seq, "l2")
    assert imp.finish(stat, 2, "l2").tolist() == pytest.approx([math.sqrt(20), math.sqrt(5)])
    assert imp.finish(imp.batch_statistic(mean_seq, "mean"), 2, "mean").tolist() == [3.0, 1.5]


def test_head_magnitude_and_gate_up_and_block_importance():
    x = torch.zeros(1, 1, 4)
    x[0, 0, 2:] = torch.tensor([3.0, 4.0])
    assert imp.head_magnitude(x, 2).reshape(-1).tolist() == [0.0, 5.0]
    fc1 = torch.tensor([[[1.0, -3.0, 3.0, 1.0]]])  # gate [1, -3], up [3, 1]
    assert imp.gate_up_magnitude(fc1).reshape(-1).tolist() == [2.0, 2.0]
    h = torch.randn(3, 2, 8)
    assert imp.block_importance_sum(h, 2 * h)[0] == pytest.approx(0.0, abs=1e-5)
    assert imp.block_importance_sum(h, -h) == (pytest.approx(12.0), 6)


def test_layer_aggregation_and_bad_rules():
    per_layer = torch.arange(6.0).reshape(2, 3)
    assert imp.across_layers(per_layer, "sum").tolist() == [3.0, 5.0, 7.0]
    assert torch.equal(imp.across_layers(per_layer, "per-layer"), per_layer)
    with pytest.raises(ConfigError, match="batch must be one of"):
        imp.Aggregation(batch="max")


def test_scores_file_roundtrip_and_mismatch(tmp_path):
    shape = get_preset("tiny")
    tensors = {"hidden": torch.rand(64), "heads": torch.rand(4, 4), "ffn": torch.rand(160),
               "layers": torch.rand(4)}
    path = write_scores(tmp_path / "s.safetensors", tensors, {"model": shape.to_dict()})
    back, header = read_scores(path)
    assert header["model"] == shape.to_dict() and torch.equal(back["heads"], tensors["heads"])
    check_matches(back, shape, path)
    with pytest.raises(ConfigError, match="different model"):
        check_matches(back, shape.replace(ffn_hidden_size=128), path)
    with pytest.raises(ConfigError, match="not found"):
        read_scores(tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="not a safetensors"):
        read_scores(tmp_path / "junk.safetensors")


def test_per_layer_scores_are_written_though_two_names_hold_one_tensor(tmp_path):
    # --layer-aggregation per-layer: "heads" and "heads.per_layer" are the same tensor
    stats = {"samples": torch.tensor(2.0), "hidden": torch.rand(2, 8, dtype=torch.float64),
             "heads": torch.rand(3, 4, dtype=torch.float64), "ffn": torch.rand(3, 6, dtype=torch.float64),
             "block": torch.tensor([[1.0, 2.0]] * 3, dtype=torch.float64)}
    scores = imp.scores_from_statistics(stats, imp.Aggregation(layers="per-layer"))
    back, _ = read_scores(write_scores(tmp_path / "s.safetensors", scores, {}))
    assert torch.equal(back["heads"], back["heads.per_layer"]) and back["ffn"].shape == (3, 6)


@pytest.mark.parametrize("header, match", [("{not json", "kanana header is not JSON"),
                                           ("[1]", "is not a kanana-importance/1 scores file")])
def test_a_scores_file_with_a_bad_header_is_a_clear_error(tmp_path, header, match):
    from safetensors.torch import save_file

    path = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"kanana": header})
    with pytest.raises(ConfigError, match=match):
        read_scores(path)
