"""`kanana convert` / `kanana upscale-depth` on HF directories, in-process (no megatron
is started on these paths): bad input fails before any output exists, HF -> HF
up-scaling copies layers exactly, and an interrupted megatron write looks incomplete."""
from __future__ import annotations

import json
import sys
import types

import pytest
import torch
from safetensors.torch import load_file

from megatron_kanana import cli
from megatron_kanana.checkpointing import hf_dir, layout
from megatron_kanana.models import get_preset
from megatron_kanana.surgery import hf_mapping as hm
from tests.unit.data.conftest import build_hf_tokenizer

SHAPE = get_preset("tiny-nano")


@pytest.fixture()
def hf(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {k: torch.randn(v, generator=g) for k, v in hm.hf_tensor_shapes(SHAPE).items()}
    hf_dir.write_hf_dir(tmp_path / "hf", list(hm.hf_tensor_shapes(SHAPE).items()),
                        hm.hf_config_from_shape(SHAPE, torch.float32), lambda n, rows=None: tensors[n], torch.float32)
    # a real tokenizer: exports write its chat template and special-token ids beside the weights
    build_hf_tokenizer(tmp_path / "hf" / "tokenizer.json", vocab_size=300)
    return tmp_path / "hf", tensors


def _run(capsys, *argv):
    rc = cli.main(list(argv))
    return rc, capsys.readouterr().err


def _set_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("changes,message", [({"attention_bias": True}, "attention_bias"),
                                             ({"num_local_experts": 4}, "mixture of experts"),
                                             ({"model_type": "gemma"}, "model_type"),
                                             ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "rope_type"),
                                             ({"hidden_size": 64}, "has shape")])
def test_unsupported_or_contradictory_input(hf, tmp_path, capsys, changes, message):
    _set_config(hf[0], **changes)
    rc, err = _run(capsys, "convert", "--from", "hf", "--to", "mcore", "--input", str(hf[0]),
                   "--output", str(tmp_path / "out"))
    assert rc == 2 and message in err
    assert not (tmp_path / "out").exists()


def test_layout_and_output_checks(hf, tmp_path, capsys):
    base = ["convert", "--from", "hf", "--to", "mcore", "--input", str(hf[0])]
    rc, err = _run(capsys, *base, "--output", str(tmp_path / "o1"), "--tp", "3")
    assert rc == 2 and "tensor_model_parallel_size (3)" in err
    rc, err = _run(capsys, *base, "--output", str(tmp_path / "o1"), "--pp", "3")
    assert rc == 2 and "num_layers (4)" in err
    rc, err = _run(capsys, *base, "--output", str(hf[0]))
    assert rc == 2 and "choose a new --output" in err
    rc, err = _run(capsys, "convert", "--from", "hf", "--to", "hf", "--input", str(hf[0]), "--output", str(tmp_path / "o2"))
    assert rc == 2 and "nothing to convert" in err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.parametrize("spec,message", [("0-4", "outside"), ("", "empty"), ("2-1", "backwards")])
def test_bad_layer_specs(hf, tmp_path, capsys, spec, message):
    rc, err = _run(capsys, "upscale-depth", "--input", str(hf[0]), "--output", str(tmp_path / "up"), "--layers", spec)
    assert rc == 2 and message in err and not (tmp_path / "up").exists()


def test_hf_to_hf_upscale_copies_layers_exactly(hf, tmp_path, capsys):
    rc = cli.main(["upscale-depth", "--input", str(hf[0]), "--output", str(tmp_path / "up"), "--layers", "0-3,2-3"])
    assert rc == 0 and "out 0-3 <- src 0-3; out 4-5 <- src 2-3" in capsys.readouterr().out
    out, src = load_file(tmp_path / "up" / hf_dir.SINGLE), hf[1]
    for j, i in enumerate([0, 1, 2, 3, 2, 3]):
        for name in hm.HF_LAYER_TENSORS:
            assert torch.equal(out[f"model.layers.{j}.{name}"], src[f"model.layers.{i}.{name}"])
    assert torch.equal(out[hm.HF_EMBEDDING], src[hm.HF_EMBEDDING])
    config = json.loads((tmp_path / "up" / "config.json").read_text())
    assert config["num_hidden_layers"] == 6 and config["kanana"]["layer_map"] == [0, 1, 2, 3, 2, 3]
    assert (tmp_path / "up" / "tokenizer.json").exists()


def test_interrupted_megatron_write_is_not_a_checkpoint(hf, tmp_path, capsys, monkeypatch):
    def save_source(source, directory, dtype=None):
        directory.mkdir(parents=True)
        (directory / "__0_0.distcp").write_bytes(b"half")
        raise KeyboardInterrupt

    fake = types.ModuleType("megatron_kanana.mcore.dist_ckpt_writer")
    fake.save_source = save_source
    monkeypatch.setitem(sys.modules, "megatron_kanana.mcore.dist_ckpt_writer", fake)
    out = tmp_path / "mc"
    with pytest.raises(KeyboardInterrupt):
        cli.main(["convert", "--from", "hf", "--to", "mcore", "--input", str(hf[0]), "--output", str(out)])
    assert [p.name for p in out.iterdir()] == ["iter_0000000.partial"]
    with pytest.raises(layout.CheckpointError):
        layout.resolve(out)
    from megatron_kanana.surgery import convert

    convert.check_output_free(out, "mcore")  # a rerun may reuse the directory
