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
