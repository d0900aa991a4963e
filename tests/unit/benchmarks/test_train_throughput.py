"""The pure parts of benchmarks/train_throughput.py: the FLOP/MFU arithmetic against the
reference H100 figures, the generated tokenizer, dataset and trainer config, the
reading of the trainer's metrics, and the Llama baseline's shape (built on the meta device)."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from megatron_kanana.models.presets import get_preset

REPO = Path(__file__).resolve().parents[3]
NANO = get_preset("kanana-nano-2.1b")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tt = _load("train_throughput")
hf = _load("hf_llama_throughput")


def test_flops_per_token_of_nano_by_hand():
    # per layer: q,o 1792×3072 each, k,v 1792×1024 each, gate/up/down 3×1792×8064; plus the tied output layer
    matmul = 32 * (2 * 1792 * 3072 + 2 * 1792 * 1024 + 3 * 1792 * 8064) + 128256 * 1792
    assert NANO.flops_per_token(4096) == 6 * matmul + 6 * 32 * 4096 * 24 * 128 == 14_937_096_192


@pytest.mark.parametrize("tokens_per_s, tflops, mfu", [(18_229, 272, 0.275), (14_646, 219, 0.221)])
def test_reference_h100_figures(tokens_per_s, tflops, mfu):
    # megatron-core-notes.md: transformers 18,229 tokens/s = 272 TFLOP/s = 27.5% MFU; megatron-core 14,646 = 22.1%
    f = tt.figures(tokens_per_s, NANO, 4096, tt.H100_BF16_PEAK_TFLOPS)
    assert round(f["tflops_per_gpu"]) == tflops
    assert round(f["mfu"], 3) == mfu


def test_synthetic_tokenizer_loads_with_the_full_vocabulary(tmp_path):
    from megatron_kanana.data.tokenizer import load_tokenizer

    path = tt.write_tokenizer(tmp_path / "tok" / "tokenizer.json", 128_256)
    tok = load_tokenizer(path.parent)
    assert tok.vocab_size == 128_256
    assert (tok.eod, tok.pad) == (0, 1)
    assert tok.encode("t5 t128255") == [5, 128_255]
    with pytest.raises(ValueError, match="vocab_size must be >= 4"):
        tt.write_tokenizer(tmp_path / "x.json", 3)


def test_random_dataset_spans_the_vocabulary(tmp_path):
    from megatron_kanana.mcore.indexed import IndexedDataset, read_summary

    prefix = tmp_path / "d" / "random"
    tt.write_random_dataset(prefix, num_tokens=10_000, vocab_size=128_256, doc_length=4096)
    summary = read_summary(str(prefix))
    assert (summary.num_tokens, summary.num_documents, summary.dtype) == (10_000, 3, "int32")
    dataset = IndexedDataset(str(prefix))  # kept alive: its items are views of its memory map
    ids = np.concatenate([dataset[i] for i in range(3)])
    assert ids.min() >= 0 and ids.max() < 128_256
    assert ids.max() > 120_000 and ids.min() < 8_000  # uniform, not clipped to a 16-bit range


def test_trainer_config_runs_exactly_the_requested_steps(tmp_path):
    from megatron_kanana.config.root import load_config
    from megatron_kanana.data.tokenizer import load_tokenizer
    from megatron_kanana.training.stages import plan_stages

    config = tt.write_trainer_inputs(tmp_path, get_preset("tiny"), "tiny", seq=64, micro_batch=1,
                                     total_steps=7, seed=1)
    cfg = load_config(config)
    cfg.check(load_tokenizer(cfg.data.tokenizer).vocab_size)
    assert plan_stages(cfg.data, cfg.schedule, cfg.model).end_step == 7
    assert cfg.logging.log_interval == 1 and cfg.checkpoint.save_interval == 0
    # a longer sequence than the preset was built for raises the position limit with it
    long = tt.write_trainer_inputs(tmp_path / "long", get_preset("tiny"), "tiny", seq=512, micro_batch=1,
                                   total_steps=2, seed=1)
    assert load_config(long).model.max_position_embeddings == 512


def test_trainer_rates_leave_out_warmup():
    records = [{"kind": "train", "iteration": i, "tokens_per_s": tps, "time": t, "memory_gib": mem,
                "memory_kind": "gpu_max_allocated", "loss": 1.0, "mfu": 0.2}
               for i, tps, t, mem in [(1, 10.0, 100.0, 5.0), (2, 400.0, 101.0, 7.0), (3, 500.0, 103.0, 7.0),
                                      (4, 600.0, 104.0, 7.5)]]
    records.insert(2, {"kind": "validation", "iteration": 2, "losses": {"all": 1.0}, "time": 101.5})
    rates = tt.trainer_step_rates(records, warmup=1, tokens_per_step=1000)
    assert rates["tokens_per_s"] == 500.0 and rates["measured_steps"] == 3
    assert rates["wall_tokens_per_s"] == 1000.0  # median of 1000/1, 1000/2, 1000/1
    assert rates["memory_gib"] == 7.5
    with pytest.raises(ValueError, match="no iterations after the 4 warm-up steps"):
        tt.trainer_step_rates(records, warmup=4, tokens_per_step=1000)


def test_llama_baseline_has_the_nano_shape():
    from transformers import LlamaForCausalLM

    config = hf.llama_config(NANO)
    assert (config.num_attention_heads, config.head_dim, config.num_key_value_heads) == (24, 128, 8)
    assert config._attn_implementation == "sdpa"
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == NANO.parameters
    assert model.model.layers[0].self_attn.q_proj.weight.shape == (24 * 128, 1792)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU exit")
def test_no_gpu_exits_2(tmp_path, capsys):
    assert tt.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA GPU is available" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written that could pass for a result


def test_table_and_ratio_format():
    row = {"label": "x", "tokens_per_s": 18_229.0, "tflops_per_gpu": 272.3, "mfu": 0.2753, "memory_gib": 49.0,
           "memory_kind": "gpu_max_allocated"}
    text = tt.table({"trainer": row, "transformers": row, "ratio_tokens_per_s": 1.0, "ratio_memory": 1.0})
    assert "| x | 18,229 | 272.3 | 27.5% | 49.00 GiB (gpu_max_allocated) |" in text
    assert math.isclose(tt.figures(18_229, NANO, 4096, 989.0)["mfu"], 0.2753, abs_tol=5e-4)
