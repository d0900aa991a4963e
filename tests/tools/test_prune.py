"""`kanana prune-score` and `kanana prune` end to end on a tiny GQA model (untied, 8 heads in 4 KV groups).

One set-up for all tests: a random HF teacher converted to megatron; one torchrun
scores it at TP=1 (DP=2), TP=2 and PP=2; one process runs every `kanana prune`
call (tests/tools/cli_driver.py); one torchrun loads the results at TP=2 for
logits and a training step (tests/tools/mcore_worker.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from megatron_kanana.checkpointing import layout
from megatron_kanana.surgery.scores_file import read_scores
from tests.distributed.launch import python, torchrun
from tests.distributed.training_setup import make_inputs, write_config
from tests.tools.conftest import build_hf

HERE = Path(__file__).resolve().parent
TEACHER = dict(hidden_size=64, num_attention_heads=8, num_key_value_heads=4, head_dim=16, intermediate_size=192,
               num_hidden_layers=4, vocab_size=512, tie_word_embeddings=False)
MODEL = {"preset": "tiny", "hidden_size": 64, "num_attention_heads": 8, "num_query_groups": 4,
         "ffn_hidden_size": 192, "tie_embeddings": False}
SMALL = ["--hidden", "48", "--ffn", "128", "--heads", "4", "--drop-layers", "1", "--tie-embeddings", "--tp", "2"]
BAD = {  # flags -> the error they must give
    ("--heads", "6"): "not a multiple of the 4 KV groups",
    ("--hidden", "80"): "--hidden 80 exceeds the source model's 64",
    ("--ffn", "101", "--tp", "2"): "ffn_hidden_size (101) is not divisible",
    ("--drop-layers", "4"): "--drop-layers must be in 0..3",
}


def _prune(root: Path, out: str, *flags: str, source: str = "teacher") -> list[str]:
    return ["prune", "--input", str(root / source), "--scores", str(root / "scores_tp1_pp1.safetensors"),
            "--output", str(root / out), *flags]


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune")
    make_inputs(root)
    build_hf(root / "teacher_hf", TEACHER, {})
    config = write_config(root, root / "score_run", model=MODEL, checkpoint={"load": str(root / "teacher")})
    no_load = write_config(root, root / "no_load", model=MODEL)
    (root / "convert.json").write_text(json.dumps([["convert", "--from", "hf", "--to", "mcore", "--input",
                                                    str(root / "teacher_hf"), "--output", str(root / "teacher")]]))
    python([str(HERE / "cli_driver.py"), str(root / "convert.json"), str(root / "convert_results.json")], timeout=120)
    torchrun(HERE / "score_worker.py", 2, [str(config), str(root)], timeout=240)
    calls = [_prune(root, "keepall"), _prune(root, "small", *SMALL),
             *[_prune(root, f"bad{i}", *flags) for i, flags in enumerate(BAD)],
             _prune(root, "wrong_scores", source="small"),
             ["prune-score", str(no_load), "--batches", "1", "--output", str(root / "x.safetensors")]]
    (root / "calls.json").write_text(json.dumps(calls))
    python([str(HERE / "cli_driver.py"), str(root / "calls.json"), str(root / "results.json")], timeout=120)
    tasks = [{"kind": "logits", "ckpt": str(root / name), "tp": 2, "pp": 1, "out": str(root / f"logits_{name}.pt")}
             for name in ("teacher", "keepall", "small")]
    tasks.append({"kind": "train", "ckpt": str(root / "small"), "tp": 2, "pp": 1, "out": str(root / "train.json")})
    (root / "tasks.json").write_text(json.dumps({"tasks": tasks}))
    torchrun(HERE / "mcore_worker.py", 2, [str(root / "tasks.json")], timeout=240)
    return root, json.loads((root / "results.json").read_text())


def test_scores_agree_across_layouts(pruned):
    root, _ = pruned
    reference, header = read_scores(root / "scores_tp1_pp1.safetensors")
    assert header["samples"] == 8 and header["layout"]["dp"] == 2
    assert set(reference) >= {"hidden", "hidden.per_norm", "heads", "heads.per_layer", "ffn", "ffn.per_layer",
                              "layers"}
    assert reference["heads.per_layer"].shape == (4, 8) and reference["hidden.per_norm"].shape == (9, 64)
    for other in ("scores_tp2_pp1", "scores_tp1_pp2"):
        scores, _ = read_scores(root / f"{other}.safetensors")
        for key, value in reference.items():
            torch.testing.assert_close(scores[key], value, rtol=1e-5, atol=0, msg=f"{other} {key}")


def test_keeping_everything_reproduces_the_logits_exactly(pruned):
    root, results = pruned
    assert results[0]["rc"] == 0, results[0]["stderr"]
    assert torch.equal(torch.load(root / "logits_keepall.pt"), torch.load(root / "logits_teacher.pt"))


def test_pruned_model_shape_record_and_training_step(pruned):
    root, results = pruned
    assert results[1]["rc"] == 0, results[1]["stderr"]
    meta = layout.read_meta(layout.resolve(root / "small"))
    model = meta["model"]
    assert (model["hidden_size"], model["ffn_hidden_size"], model["num_attention_heads"], model["num_query_groups"],
            model["num_layers"], model["tie_embeddings"]) == (48, 128, 4, 4, 3, True)
    kept = meta["pruning"]["kept"]
    assert len(kept["hidden"]) == 48 and len(kept["ffn"]) == 128 and len(kept["layers"]) == 3
    assert sorted(h // 2 for h in kept["heads"]) == [0, 1, 2, 3]  # one query head left in each KV group
    assert meta["pruning"]["tied_by_averaging"]
    logits = torch.load(root / "logits_small.pt")
    assert logits.shape[-1] == 512 and torch.isfinite(logits).all()
    step = json.loads((root / "train.json").read_text())
    assert step["update_successful"] and step["loss"] > 0


def test_bad_targets_are_refused_before_writing(pruned):
    root, results = pruned
    for i, (result, message) in enumerate(zip(results[2:2 + len(BAD)], BAD.values())):
        assert result["rc"] == 2 and message in result["stderr"], result
        assert not (root / f"bad{i}").exists()
    wrong, no_load = results[2 + len(BAD):]
    assert wrong["rc"] == 2 and "different model" in wrong["stderr"]
    assert no_load["rc"] == 2 and "checkpoint.load is not set" in no_load["stderr"]
