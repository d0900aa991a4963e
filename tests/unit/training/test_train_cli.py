"""`kanana train` refuses bad configs before any work starts (exit 2, message naming the key)."""
import yaml

from megatron_kanana.cli import main


def write(tmp_path, config):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


BASE = {"run": {"output_dir": "run"}, "model": {"preset": "tiny"},
        "data": {"mixture": "m.yaml", "tokenizer": "t.json", "seq_length": 64}}


def test_unknown_key(tmp_path, capsys):
    assert main(["train", write(tmp_path, {**BASE, "optim": {"lr": 1.0}})]) == 2
    assert "unknown key(s) optim.lr" in capsys.readouterr().err


def test_wrong_type_and_cross_section(tmp_path, capsys):
    assert main(["train", write(tmp_path, BASE), "data.micro_batch_size=two"]) == 2
    assert "data.micro_batch_size: expected an integer" in capsys.readouterr().err
    assert main(["train", write(tmp_path, BASE), "data.seq_length=4096"]) == 2
    assert "data.seq_length (4096) exceeds model.max_position_embeddings (256)" in capsys.readouterr().err


def test_dry_run_prints_resolved_config(tmp_path, capsys):
    assert main(["train", write(tmp_path, BASE), "--dry-run", "parallel.tensor_model_parallel_size=2"]) == 0
    out = capsys.readouterr().out
    resolved = yaml.safe_load(out.split("launch:")[0])
    assert resolved["model"]["hidden_size"] == 64 and resolved["parallel"]["tensor_model_parallel_size"] == 2
    assert resolved["run"]["output_dir"] == str((tmp_path / "run").resolve())
    assert "megatron_kanana.training.launcher" in out and "--nproc-per-node=2" in out


def test_malformed_yaml_file_is_one_line_naming_file_and_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("run: {output_dir: run}\nmodel: {preset: tiny\ndata: {seq_length: 64}\n")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: invalid YAML" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_malformed_override_is_one_line_naming_the_override(tmp_path, capsys):
    assert main(["train", write(tmp_path, BASE), "data.stage_steps=[", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "override 'data.stage_steps=['" in err and "invalid YAML" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_paths_resolve_against_the_config_file_in_every_section(tmp_path, capsys):
    """Path fields are marked once (field metadata) and resolved by the sections themselves."""
    config = {**BASE, "data": {**BASE["data"], "mixture": None}, "checkpoint": {"load": "base"},
              "dpo": {"data_prefixes": ["pairs/a", "/abs/b"], "reference": "ref", "seq_length": 64}}
    assert main(["train", write(tmp_path, config), "--dry-run", "data.micro_batch_size=2",
                 "data.global_batch_size=2"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out.split("launch:")[0])
    here = tmp_path.resolve()
    assert resolved["data"]["tokenizer"] == str(here / "t.json")
    assert resolved["checkpoint"]["load"] == str(here / "base")
    assert resolved["dpo"]["data_prefixes"] == [str(here / "pairs/a"), "/abs/b"]
    assert resolved["dpo"]["reference"] == str(here / "ref")
