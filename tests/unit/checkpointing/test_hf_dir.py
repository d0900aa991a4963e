"""HF directories: streamed writing (single file, shards, row blocks) read back by
safetensors, and every broken input refused by the reader with a clear error."""
from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from megatron_kanana.checkpointing import hf_dir
from megatron_kanana.checkpointing.layout import CheckpointError
from megatron_kanana.models import get_preset
from megatron_kanana.surgery import hf_mapping as hm

SHAPE = get_preset("tiny-untied")


def _write(tmp_path, name="hf", max_shard_bytes=1 << 30, dtype=torch.float32, block_bytes=None, monkeypatch=None):
    g = torch.Generator().manual_seed(0)
    tensors = {k: torch.randn(v, generator=g).to(dtype) for k, v in hm.hf_tensor_shapes(SHAPE).items()}
    asked = []

    def get(n, rows=None):
        asked.append((n, rows))
        return tensors[n] if rows is None else tensors[n][rows[0]:rows[1]]

    if block_bytes is not None:
        monkeypatch.setattr(hf_dir, "BLOCK_BYTES", block_bytes)
    config = hm.hf_config_from_shape(SHAPE, dtype)
    out = hf_dir.write_hf_dir(tmp_path / name, list(hm.hf_tensor_shapes(SHAPE).items()), config, get, dtype,
                              max_shard_bytes=max_shard_bytes)
    return out, tensors, asked


def _read_all(directory):
    index = directory / hf_dir.INDEX
    files = set(json.loads(index.read_text())["weight_map"].values()) if index.exists() else {hf_dir.SINGLE}
    return {k: v for f in files for k, v in load_file(directory / f).items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_single_file_round_trip(tmp_path, dtype):
    out, tensors, _ = _write(tmp_path, dtype=dtype)
    assert (out / hf_dir.SINGLE).exists() and not (out / hf_dir.INDEX).exists()
    back = _read_all(out)
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
    reader = hf_dir.HFReader(out)
    assert reader.shape == SHAPE and reader.dtype == dtype
    assert torch.equal(reader.tensor(hm.HF_EMBEDDING, (5, 9)), tensors[hm.HF_EMBEDDING][5:9])


def test_shards_and_row_blocks(tmp_path, monkeypatch):
    out, tensors, asked = _write(tmp_path, max_shard_bytes=200_000, block_bytes=40_000, monkeypatch=monkeypatch)
    weight_map = json.loads((out / hf_dir.INDEX).read_text())["weight_map"]
    assert len(set(weight_map.values())) > 2
    back = _read_all(out)
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)
    blocks = [rows for n, rows in asked if n == hm.HF_EMBEDDING]
    assert len(blocks) > 1 and blocks[0][0] == 0 and blocks[-1][1] == SHAPE.vocab_size


def test_an_interrupted_write_leaves_nothing(tmp_path):
    def failing(name, rows=None):
        if "layers.2" in name:
            raise KeyboardInterrupt
        return torch.zeros(hm.hf_tensor_shapes(SHAPE)[name])

    with pytest.raises(KeyboardInterrupt):
        hf_dir.write_hf_dir(tmp_path / "out", list(hm.hf_tensor_shapes(SHAPE).items()), {}, failing, torch.float32)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    (tmp_path / "out.partial").mkdir()  # a kill -9 cannot clean up: a rerun replaces the leftovers
    out, _, _ = _write(tmp_path, name="out")
    assert out.exists() and not (tmp_path / "out.partial").exists()


def _edit_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        hf_dir.HFReader(tmp_path)
    out, tensors, _ = _write(tmp_path, max_shard_bytes=200_000)
    _edit_config(out, intermediate_size=SHAPE.ffn_hidden_size + 2)
    with pytest.raises(CheckpointError, match="has shape .* but config.json implies"):
        hf_dir.HFReader(out)
    _edit_config(out, intermediate_size=SHAPE.ffn_hidden_size, num_hidden_layers=SHAPE.num_layers + 1)
    with pytest.raises(CheckpointError, match="missing from the checkpoint"):
        hf_dir.HFReader(out)
    _edit_config(out, num_hidden_layers=SHAPE.num_layers)
    os.remove(sorted(out.glob("model-*.safetensors"))[1])
    with pytest.raises(CheckpointError, match="are missing"):
        hf_dir.HFReader(out)


def test_bias_tensors_are_refused(tmp_path):
    out, tensors, _ = _write(tmp_path)
    tensors["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(64)
    save_file(tensors, str(out / hf_dir.SINGLE))
    with pytest.raises(CheckpointError, match="unexpected tensors .*q_proj.bias"):
        hf_dir.HFReader(out)
