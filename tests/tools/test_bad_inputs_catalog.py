"""The catalog of bad inputs and faults (issue 14, README "Bad inputs and faults"), as a user or an
attacker would meet them through the `kanana` entry point: each exits 2 with one line
`kanana CMD: error: ...` naming the file or key, no traceback, nothing half-written left; a
tampered checkpoint never runs its code. In-process `main([...])` calls; none of these
cases gets as far as starting megatron's model (the training cases fail in the launcher's
pre-flight checks), so the whole file takes seconds."""
from __future__ import annotations

import gzip
import json
import shutil

import pytest
import torch
import torch.distributed.checkpoint as dcp
import yaml

from megatron_kanana import cli
from megatron_kanana.checkpointing import layout
from megatron_kanana.data.demo_corpus import demo_corpus_files
from megatron_kanana.data.preprocess import preprocess
from megatron_kanana.models import get_preset
from megatron_kanana.surgery import hf_mapping as hm
from tests.distributed.training_setup import make_inputs, write_config
from tests.unit.checkpointing.test_safe_load import tamper_metadata
from tests.unit.data.conftest import build_hf_tokenizer

SHAPE = get_preset("tiny-nano")
LAYER_PREFIX = "decoder.layers."


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    make_inputs(root)
    return root


def fails(capsys, *argv, names: str, kind: str = "error") -> str:
    """Runs `kanana ARGV`; it must exit 2 with one line `kanana CMD: KIND: ...` naming `names`
    and no traceback (`kanana train` says "config error" for a bad config value)."""
    rc = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.startswith(f"kanana {argv[0]}: {kind}: ")]
    assert len(lines) == 1 and names in lines[0], err
    assert "Traceback" not in err
    return lines[0]


def model_checkpoint(directory, tokenizer) -> None:
    """A model-only dist checkpoint of SHAPE, as `kanana convert` writes one (without megatron)."""
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v, generator=g) for k, v in hm.global_tensor_shapes(SHAPE).items()}
    state.update({LAYER_PREFIX + k: torch.randn((SHAPE.num_layers, *v), generator=g)
                  for k, v in hm.layer_tensor_shapes(SHAPE).items()})
    dcp.save(state, checkpoint_id=str(directory), no_dist=True)
    layout.write_meta(directory, {"contents": ["model"], "model": SHAPE.to_dict(), "tokenizer": str(tokenizer),
                                  "iteration": 0})


@pytest.fixture()
def tampered(inputs, tmp_path):
    directory = tmp_path / "shared" / "iter_0000000"
    model_checkpoint(directory, inputs / "tokenizer.json")
    marker = tmp_path / "MARKER"
    tamper_metadata(directory, marker)
    return directory, marker


# ---------------------------------------------------------------- a checkpoint must not run code

def test_generate_refuses_tampered_metadata(tampered, capsys):
    directory, marker = tampered
    fails(capsys, "generate", directory, "--prompt", "hi", names=f"{directory}/.metadata")
    assert not marker.exists()


def test_convert_refuses_tampered_metadata(tampered, tmp_path, capsys):
    directory, marker = tampered
    out = tmp_path / "hf"
    fails(capsys, "convert", "--from", "mcore", "--to", "hf", "--input", directory, "--output", out,
          names=f"{directory}/.metadata")
    assert not marker.exists() and not out.exists() and not (tmp_path / "hf.partial").exists()


def test_train_refuses_tampered_checkpoint_load(inputs, tampered, tmp_path, capsys):
    directory, marker = tampered
    config = write_config(inputs, tmp_path / "run")
    fails(capsys, "train", config, f"checkpoint.load={directory}", names=f"{directory}/.metadata")
    assert not marker.exists() and not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------- damaged checkpoints

def test_checkpoint_shard_deleted_or_truncated_names_the_checkpoint(inputs, tmp_path, capsys):
    directory = tmp_path / "ckpt" / "iter_0000000"
    model_checkpoint(directory, inputs / "tokenizer.json")
    assert cli.main(["convert", "--from", "mcore", "--to", "hf", "--input", str(directory),
                     "--output", str(tmp_path / "ok")]) == 0  # the intact checkpoint converts
    (shard,) = directory.glob("*.distcp")
    shard.write_bytes(shard.read_bytes()[:1000])
    out = tmp_path / "hf"
    fails(capsys, "convert", "--from", "mcore", "--to", "hf", "--input", directory, "--output", out,
          names=str(directory))
    shard.unlink()
    fails(capsys, "convert", "--from", "mcore", "--to", "hf", "--input", directory, "--output", out,
          names=str(directory))
    assert not out.exists() and not (tmp_path / "hf.partial").exists()


def test_corrupt_kanana_json_names_the_file(tampered, capsys):
    directory, _ = tampered
    (directory / layout.META).write_text('{"model": ')
    fails(capsys, "generate", directory, "--prompt", "hi", names=f"{directory}/{layout.META}")


def test_recorded_tokenizer_resolves_against_the_checkpoint_never_the_cwd(tmp_path, monkeypatch):
    ckpt = tmp_path / "ckpt"
    (ckpt / "tokenizer").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "tokenizer").mkdir(parents=True)  # a different tokenizer/ in the cwd
    monkeypatch.chdir(elsewhere)
    assert layout.recorded_tokenizer({"tokenizer": "tokenizer"}, ckpt) == str(ckpt / "tokenizer")
    shutil.rmtree(ckpt / "tokenizer")
    with pytest.raises(layout.CheckpointError, match=f"{ckpt}/tokenizer is missing"):
        layout.recorded_tokenizer({"tokenizer": "tokenizer"}, ckpt)


# ---------------------------------------------------------------- data and tokenizer agree

def test_dataset_of_another_tokenizer_is_refused_naming_it(inputs, tmp_path, capsys):
    other = build_hf_tokenizer(tmp_path / "other.json", vocab_size=300)
    english = next(p for p in demo_corpus_files() if p.stem == "en")
    preprocess([str(english)], other, str(tmp_path / "data" / "en"), append_eod=True)
    mixture = yaml.safe_load((inputs / "mixture.yaml").read_text())
    mixture["data_root"] = str(tmp_path / "data")
    for stage in mixture["stages"]:
        stage["sources"] = [s for s in stage["sources"] if s["path"] == "en"]
        stage["sources"][0]["weight"] = 1.0
    (tmp_path / "mixture.yaml").write_text(yaml.safe_dump(mixture))
    config = write_config(inputs, tmp_path / "run", data={"mixture": str(tmp_path / "mixture.yaml")})
    line = fails(capsys, "train", config, names=f"dataset {tmp_path / 'data' / 'en'} was tokenized with")
    assert "other.json" in line


def test_token_ids_past_the_model_vocabulary_are_refused(inputs, tmp_path, capsys):
    config = write_config(inputs, tmp_path / "run")
    fails(capsys, "train", config, "model.vocab_size=256", names="model.vocab_size")


def test_datasets_without_metadata_still_train_and_their_ids_are_scanned(inputs, tmp_path, monkeypatch):
    from megatron_kanana.config.root import load_config
    from megatron_kanana.data import pretrain_check
    from megatron_kanana.data.indexed_datasets import DatasetError
    from megatron_kanana.training import preflight

    data = tmp_path / "legacy"
    shutil.copytree(inputs / "data", data)
    for meta in data.glob("*.meta.json"):
        meta.unlink()  # as `kanana preprocess` wrote datasets before it recorded the tokenizer
    cfg = load_config(write_config(inputs, tmp_path / "run", data={"data_root": str(data)}))
    warned: list[str] = []
    monkeypatch.setattr(pretrain_check.log, "warning", warned.append)
    preflight.check(cfg)
    assert len(warned) == 1 and "record no tokenizer" in warned[0]
    with pytest.raises(DatasetError, match=f"dataset {data}/(en|ko) holds token id"):
        preflight.check(cfg.replace(model=cfg.model.replace(vocab_size=256)))


@pytest.mark.parametrize("damage,names", [("truncate_idx", "en"), ("delete_bin", "en.idx exists")])
def test_damaged_dataset_names_the_file(inputs, tmp_path, capsys, damage, names):
    data = tmp_path / "data"
    shutil.copytree(inputs / "data", data)
    if damage == "truncate_idx":
        idx = data / "en.idx"
        idx.write_bytes(idx.read_bytes()[:40])
    else:
        (data / "en.bin").unlink()
    config = write_config(inputs, tmp_path / "run", data={"data_root": str(data)})
    fails(capsys, "train", config, names=str(data / names))


def test_missing_tokenizer_names_it(inputs, tmp_path, capsys):
    config = write_config(inputs, tmp_path / "run", data={"tokenizer": str(tmp_path / "nope.json")})
    fails(capsys, "train", config, names=str(tmp_path / "nope.json"))


def test_truncated_gzip_input_names_the_file(inputs, tmp_path, capsys):
    blob = gzip.compress(b'{"text": "hello world"}\n' * 5000)
    path = tmp_path / "shard.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2])
    fails(capsys, "preprocess", "--input", path, "--tokenizer", inputs / "tokenizer.json",
          "--output-prefix", tmp_path / "out" / "x", "--workers", "1", names=str(path))
    assert not list((tmp_path / "out").glob("x*"))


# ---------------------------------------------------------------- config honesty

def test_train_steps_beside_a_mixture_is_refused_saying_which_wins(inputs, tmp_path, capsys):
    config = write_config(inputs, tmp_path / "run", schedule={"train_steps": 4})
    line = fails(capsys, "train", config, "data.stage_steps={stage1: 4, stage2: 2}", names="schedule.train_steps")
    assert "total 6" in line and "which wins" in line
    # stating the derived total is honoured: the pre-flight checks pass
    from megatron_kanana.config.root import load_config
    from megatron_kanana.training import preflight

    preflight.check(load_config(config, ["schedule.train_steps=6", "data.stage_steps={stage1: 4, stage2: 2}"]))


@pytest.mark.parametrize("value", ["-5", "0"])
def test_model_info_refuses_non_positive_sizes(capsys, value):
    fails(capsys, "model-info", "tiny", "--seq-length", value, names="--seq-length")


# ---------------------------------------------------------------- tools leave nothing half-written

@pytest.mark.parametrize("content,vocab,names", [("", "400", "--input"), ("hello world\n안녕하세요\n" * 20, "100000",
                                                                           "Vocabulary size too high")])
def test_train_tokenizer_failures_leave_no_output_directory(tmp_path, capsys, content, vocab, names):
    (tmp_path / "in.txt").write_text(content)
    fails(capsys, "train-tokenizer", "--input", tmp_path / "in.txt", "--vocab-size", vocab,
          "--output", tmp_path / "tok", names=names)
    assert not (tmp_path / "tok").exists()


def test_curate_config_and_input_errors(tmp_path, capsys):
    base = ["--input", tmp_path, "--output", tmp_path / "out"]
    fails(capsys, "curate", "--config", tmp_path / "nope.yaml", *base, names=str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("run: {workers: 1, bogus: 3}\n")
    fails(capsys, "curate", "--config", tmp_path / "bad.yaml", *base, names="run.bogus")
    (tmp_path / "broken.yaml").write_text("run: {workers: [1\n")
    fails(capsys, "curate", "--config", tmp_path / "broken.yaml", *base, names=str(tmp_path / "broken.yaml"))
    (tmp_path / "empty").mkdir()
    fails(capsys, "curate", "--config", "examples/curation/kanana_pipeline.yaml", "--input", tmp_path / "empty",
          "--output", tmp_path / "out", names=str(tmp_path / "empty"))
    assert not (tmp_path / "out").exists()


def test_kanana_debug_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.setenv("KANANA_DEBUG", "1")
    with pytest.raises(ValueError, match="--seq-length"):
        cli.main(["model-info", "tiny", "--seq-length", "-5"])


def test_a_failed_convert_removes_its_partial_output(tmp_path, capsys):
    """A truncated safetensors file is met only while tensors are streamed out: the HF output's
    .partial directory exists by then and must go."""
    from tests.tools.test_cli_errors import SHAPE as HF_SHAPE
    from megatron_kanana.checkpointing import hf_dir

    g = torch.Generator().manual_seed(0)
    tensors = {k: torch.randn(v, generator=g) for k, v in hm.hf_tensor_shapes(HF_SHAPE).items()}
    hf_dir.write_hf_dir(tmp_path / "hf", list(hm.hf_tensor_shapes(HF_SHAPE).items()),
                        hm.hf_config_from_shape(HF_SHAPE, torch.float32), lambda n, rows=None: tensors[n],
                        torch.float32)
    weights = tmp_path / "hf" / hf_dir.SINGLE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    out = tmp_path / "up"
    fails(capsys, "upscale-depth", "--input", tmp_path / "hf", "--output", out, "--layers", "0-3,2-3",
          names=str(tmp_path / "hf"))
    assert not out.exists() and not (tmp_path / "up.partial").exists()
    assert json.loads((tmp_path / "hf" / "config.json").read_text())  # the input is untouched


# ---------------------------------------------------------------- long context (RoPE scaling)

@pytest.mark.parametrize("scaling,names", [
    ("{rope_type: yarn, factor: 1.0, original_max_position_embeddings: 128}", "model.rope_scaling.factor: YaRN"),
    ("{rope_type: yarn, factor: 4.0, original_max_position_embeddings: 1024}",
     "model.rope_scaling.original_max_position_embeddings (1024) exceeds max_position_embeddings (256)"),
    ("{rope_type: ntk, factor: 2.0}", "model.rope_scaling.rope_type: 'ntk' is not one of ['linear', 'llama3', 'yarn']"),
    ("{rope_type: llama3, factor: 8.0}", "model.rope_scaling.high_freq_factor: rope_type 'llama3' needs it"),
])
def test_bad_rope_scaling_is_refused_naming_the_key(inputs, tmp_path, capsys, scaling, names):
    config = write_config(inputs, tmp_path / "run")
    fails(capsys, "train", config, f"model.rope_scaling={scaling}", names=names, kind="config error")


def test_hf_rope_scaling_of_no_effect_is_refused(tmp_path, capsys):
    from tests.tools.test_cli_errors import SHAPE as HF_SHAPE
    from megatron_kanana.checkpointing import hf_dir

    config = hm.hf_config_from_shape(HF_SHAPE, torch.float32)
    config["rope_scaling"] = {"type": "yarn", "factor": 0.5, "original_max_position_embeddings": 64}
    hf_dir.write_hf_dir(tmp_path / "hf", list(hm.hf_tensor_shapes(HF_SHAPE).items()), config,
                        lambda n, rows=None: torch.zeros(hm.hf_tensor_shapes(HF_SHAPE)[n]), torch.float32)
    fails(capsys, "convert", "--from", "hf", "--to", "mcore", "--input", tmp_path / "hf", "--output",
          tmp_path / "mc", names="rope_scaling.factor: YaRN extends the context, so it must be > 1; got 0.5")
    assert not (tmp_path / "mc").exists()


@pytest.mark.parametrize("model,names", [
    # the base was trained at 64 tokens: a YaRN window "originally" 128 long contradicts it
    ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 128}},
     "model.rope_scaling.original_max_position_embeddings (128) is not the window of checkpoint.load"),
    ({"max_position_embeddings": 32}, "model.max_position_embeddings (32) is shorter than the window"),
])
def test_rope_change_contradicting_the_loaded_checkpoint_is_refused(inputs, tmp_path, capsys, model, names):
    base = tmp_path / "base" / "iter_0000000"
    model_checkpoint(base, inputs / "tokenizer.json")
    meta = layout.read_meta(base)
    meta["model"] = get_preset("tiny").replace(max_position_embeddings=64).to_dict()
    layout.write_meta(base, meta)
    config = write_config(inputs, tmp_path / "run", model={"max_position_embeddings": 128, **model},
                          data={"seq_length": 32}, checkpoint={"load": str(base)})
    fails(capsys, "train", config, names=names)  # the launcher's pre-flight, before any process starts


def test_seq_length_context_parallelism_cannot_split_is_refused(inputs, tmp_path, capsys):
    config = write_config(inputs, tmp_path / "run", data={"seq_length": 60})
    fails(capsys, "train", config, "parallel.context_parallel_size=4",
          names="data.seq_length (60) must be divisible by 2 × parallel.context_parallel_size (8)",
          kind="config error")


# ---------------------------------------------------------------- a context-extension stage of a mixture

YARN = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64}


def long_stage_mixture(inputs, path, **stage2):
    """The catalog's two-stage mixture with `stage2` fields on its second stage."""
    mixture = yaml.safe_load((inputs / "mixture.yaml").read_text())
    mixture["stages"][1].update(stage2)
    path.write_text(yaml.safe_dump(mixture))
    return path


@pytest.mark.parametrize("stage2,overrides,names", [
    ({"rope_scaling": {**YARN, "factor": 1.0}, "max_position_embeddings": 128}, [],
     "stages[1].rope_scaling.factor: YaRN extends the context, so it must be > 1"),
    ({"rope_scaling": {**YARN, "original_max_position_embeddings": 256}, "max_position_embeddings": 128}, [],
     "stages[1].rope_scaling.original_max_position_embeddings (256) exceeds max_position_embeddings (128)"),
    ({"seq_length": 60}, ["parallel.context_parallel_size=4"],
     "stages[1].seq_length (60, stage stage2) must be divisible by 2 × parallel.context_parallel_size (8)"),
    ({"seq_length": 128}, [], "stages[1].seq_length (128) exceeds the stage's max_position_embeddings (64"),
])
def test_bad_context_extension_stage_is_refused_naming_the_key(inputs, tmp_path, capsys, stage2, overrides, names):
    mixture = long_stage_mixture(inputs, tmp_path / "long.yaml", **stage2)
    config = write_config(inputs, tmp_path / "run", model={"max_position_embeddings": 64},
                          data={"mixture": str(mixture)})
    line = fails(capsys, "train", config, *overrides, names=names)
    assert str(mixture) in line


def test_stage_rope_change_contradicting_the_loaded_checkpoint_is_refused(inputs, tmp_path, capsys):
    """A stage-2 run from a checkpoint trained at 64 tokens, whose stage 2 says YaRN's original
    window is 128: the error names the stage's key, not the model section's."""
    base = tmp_path / "base" / "iter_0000000"
    model_checkpoint(base, inputs / "tokenizer.json")
    meta = layout.read_meta(base)
    meta["model"] = get_preset("tiny").replace(max_position_embeddings=64).to_dict()
    layout.write_meta(base, meta)
    mixture = long_stage_mixture(inputs, tmp_path / "long.yaml", max_position_embeddings=256,
                                 rope_scaling={**YARN, "original_max_position_embeddings": 128})
    config = write_config(inputs, tmp_path / "run", model={"max_position_embeddings": 128},
                          data={"mixture": str(mixture), "stages": ["stage2"]}, checkpoint={"load": str(base)})
    fails(capsys, "train", config, names=f"{mixture}: stages[1].rope_scaling.original_max_position_embeddings "
                                         f"(128) is not the window of checkpoint.load")


# ---------------------------------------------------------------- kanana recipe

def test_recipe_refuses_an_unknown_claim_listing_the_known_ones(tmp_path, capsys):
    fails(capsys, "recipe", "--output", tmp_path / "r", "--only", "staged,tables",
          names="known: staged, dus, prune, ablations, tying, accounting")
    assert not (tmp_path / "r").exists()


def test_recipe_refuses_a_folder_of_another_configuration_or_none(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "recipe.json").write_text(json.dumps({"format": 1, "seed": 1, "quick": True}))
    fails(capsys, "recipe", "--output", tmp_path / "r", "--quick", "--seed", "2", names="seed 1 there vs 2 now")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    fails(capsys, "recipe", "--output", tmp_path / "notes", names="not a recipe folder")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
