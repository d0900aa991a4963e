"""`kanana eval`'s bad inputs: each is one line `kanana eval: error: ...` and exit 2, before any
model loads. In-process through the CLI's entry point (lm-eval's task index, ~15 s of CPU to
build, is built once for the package: conftest.py); the offline-dataset case and one end-to-end
exit code run as subprocesses, since `datasets` reads its offline switch at import."""
import subprocess
import sys

import pytest

from megatron_kanana import cli
from megatron_kanana.checkpointing import layout
from megatron_kanana.data.tokenizer import load_tokenizer
from megatron_kanana.evaluation import tasks as task_checks
from tests.distributed.launch import REPO, cpu_env
from tests.unit.data.conftest import build_hf_tokenizer

LOCAL = str(REPO / "megatron_kanana" / "evaluation" / "local_tasks")
MODEL = {"hidden_size": 64, "num_layers": 4, "num_attention_heads": 4, "num_query_groups": 4, "kv_channels": 16,
         "ffn_hidden_size": 160, "vocab_size": 512, "tie_embeddings": False, "max_position_embeddings": 256}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no hub probe from unit tests


def _checkpoint(path, tokenizer, kind="lm"):
    directory = path / layout.step_name(0)
    directory.mkdir(parents=True)
    layout.write_meta(directory, {"contents": ["model"], "model": MODEL, "model_kind": kind,
                                  "tokenizer": tokenizer.path, "tokenizer_fingerprint": tokenizer.fingerprint})
    return directory


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(build_hf_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json", vocab_size=512))


def _error(capsys, *argv) -> str:
    assert cli.main(["eval", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kanana eval: error: "), err
    return err[0]


def test_unknown_task_names_the_closest(tmp_path, capsys, tokenizer):
    line = _error(capsys, str(_checkpoint(tmp_path, tokenizer)), "--tasks", "kmmlx,gsm8k",
                  "--output", str(tmp_path / "r.json"))
    assert "unknown task 'kmmlx'" in line and "kmmlu" in line


def test_code_task_needs_confirmation(tmp_path, capsys, tokenizer):
    line = _error(capsys, str(_checkpoint(tmp_path, tokenizer)), "--tasks", "humaneval",
                  "--output", str(tmp_path / "r.json"))
    assert "humaneval" in line and "--confirm-run-unsafe-code" in line


def test_reward_model_checkpoint_refused(tmp_path, capsys, tokenizer):
    line = _error(capsys, str(_checkpoint(tmp_path, tokenizer, kind="reward")), "--tasks", "kanana_kmmlu_mini",
                  "--include-path", LOCAL, "--output", str(tmp_path / "r.json"))
    assert "reward model" in line


def test_tokenizer_not_the_checkpoints_refused(tmp_path, capsys, tokenizer):
    other = build_hf_tokenizer(tmp_path / "other.json", vocab_size=300)
    line = _error(capsys, str(_checkpoint(tmp_path, tokenizer)), "--tasks", "kanana_kmmlu_mini",
                  "--include-path", LOCAL, "--tokenizer", other, "--output", str(tmp_path / "r.json"))
    assert "does not match" in line and "other.json" in line


@pytest.mark.parametrize("flag,value,needle", [("--limit", "0", "--limit"), ("--batch-size", "0", "--batch-size"),
                                               ("--max-length", "1", "--max-length")])
def test_nonsense_numbers_refused(tmp_path, capsys, tokenizer, flag, value, needle):
    line = _error(capsys, str(_checkpoint(tmp_path, tokenizer)), "--tasks", "kanana_kmmlu_mini", flag, value,
                  "--include-path", LOCAL, "--output", str(tmp_path / "r.json"))
    assert needle in line


def _subprocess(args, env_extra, timeout=120):
    env = {**cpu_env(), **env_extra}
    return subprocess.run([sys.executable, "-m", "megatron_kanana.cli", "eval", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_limit_zero_exits_2_with_one_line_end_to_end(tmp_path, tokenizer):
    proc = _subprocess([str(_checkpoint(tmp_path, tokenizer)), "--tasks", "gsm8k", "--limit", "0",
                        "--output", str(tmp_path / "r.json")], {})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "kanana eval: error: --limit must be >= 1 documents or a fraction in (0, 1), got 0"


def test_missing_dataset_offline_names_it_and_the_fix(tmp_path, tokenizer):
    proc = _subprocess([str(_checkpoint(tmp_path, tokenizer)), "--tasks", "gsm8k", "--output", str(tmp_path / "r.json")],
                       {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")})
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("kanana eval: error: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "openai/gsm8k" in lines[0] and "load_dataset" in lines[0] and "--include-path" in lines[0]
    assert not (tmp_path / "r.json").exists()


def test_unreachable_hub_switches_datasets_offline(monkeypatch):
    for name in task_checks.OFFLINE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KANANA_HUB_HOST", "127.0.0.1")  # nothing listens on 443 here: refused at once
    assert task_checks.choose_hub_mode(timeout_s=1.0) is True
    assert all(task_checks.os.environ[name] == "1" for name in task_checks.OFFLINE_VARS)


def test_user_choice_of_online_is_kept(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    assert task_checks.choose_hub_mode() is False
    assert "HF_DATASETS_OFFLINE" not in task_checks.os.environ


def test_every_shipped_local_task_parses_and_loads_offline():
    manager = task_checks.task_manager([LOCAL], ["kanana_kmmlu_mini"])
    help_tasks = [f"kanana_help_{kind}_{lang}" for kind in ("cloze", "mc") for lang in ("en", "ko")]
    built = manager.load_task_or_group(["kanana_kmmlu_mini", "kanana_gsm8k_mini", "kanana_ppl_mini",
                                        "kanana_arith_mini", *help_tasks])
    sizes = {name: len(list(task.eval_docs)) for name, task in built.items()}
    assert sizes == {"kanana_kmmlu_mini": 24, "kanana_gsm8k_mini": 24, "kanana_ppl_mini": 24,
                     "kanana_arith_mini": 40, **{name: 60 for name in help_tasks}}
