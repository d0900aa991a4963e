"""`kanana eval` against lm-eval's own HF backend on the HF export of the same checkpoint.

One random tiny checkpoint (evaluation_worker.py) is exported with `kanana convert`,
then evaluated on the shipped local tasks (KMMLU-format multiple choice, GSM8K-format
generation, rolling perplexity) by `kanana eval` at TP=1 (with --hf: both backends in
one command), TP=2 and PP=2 (two processes each). Every request's log-likelihood must
match the HF backend's within 1e-4 (fp32), accuracies must be identical, and greedy
generations identical.
"""
import json
from pathlib import Path

import pytest

from tests.distributed.launch import REPO, kanana, python

WORKER = "tests/distributed/evaluation_worker.py"
LOCAL_TASKS = str(REPO / "megatron_kanana" / "evaluation" / "local_tasks")
TASKS = ["kanana_kmmlu_mini", "kanana_gsm8k_mini", "kanana_ppl_mini"]
LAYOUTS = {"tp1": [], "tp2": ["tensor_model_parallel_size=2", "--nproc", "2"],
           "pp2": ["pipeline_model_parallel_size=2", "--nproc", "2"]}
pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("evaluation")
    python([WORKER, "--workdir", str(work)], timeout=120)
    kanana("convert", "--from", "mcore", "--to", "hf", "--input", str(work / "ckpt"), "--output", str(work / "hf"))
    common = ["--tasks", ",".join(TASKS), "--include-path", LOCAL_TASKS, "--limit", "8", "--batch-size", "4",
              "--bootstrap-iters", "10"]
    for tag, extra in LAYOUTS.items():
        hf = ["--hf", str(work / "hf")] if tag == "tp1" else []  # tp1.hf.json, samples in tp1/hf
        kanana("eval", str(work / "ckpt"), *extra, *hf, *common, "--output", str(work / f"{tag}.json"),
               "--log-samples", str(work / tag), timeout=300)
    return work


def _samples(directory: Path, task: str) -> list[dict]:
    rows = [json.loads(line) for line in (directory / f"samples_{task}.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda r: (r["doc_id"], r["filter"]))


def _runs(work: Path) -> dict[str, Path]:
    return {"hf": work / "tp1" / "hf", **{tag: work / tag for tag in LAYOUTS}}


def _scores(rows: list[dict]) -> list:
    """Per request: (log-likelihood, is_greedy) for loglikelihood, the sum for rolling."""
    return [resp[0] for row in rows for resp in row["resps"]]


@pytest.mark.parametrize("task", ["kanana_kmmlu_mini", "kanana_ppl_mini"])
def test_every_loglikelihood_matches_the_hf_backend(work, task):
    runs = _runs(work)
    reference = _scores(_samples(runs.pop("hf"), task))
    assert len(reference) == (32 if task == "kanana_kmmlu_mini" else 8)  # 8 docs x 4 choices; 8 texts
    for tag, directory in runs.items():
        ours = _scores(_samples(directory, task))
        assert len(ours) == len(reference), tag
        for mine, theirs in zip(ours, reference):
            if isinstance(theirs, list):  # (log-likelihood, is_greedy)
                assert mine[0] == pytest.approx(theirs[0], abs=1e-4), tag
                assert mine[1] == theirs[1], tag
            else:
                assert mine == pytest.approx(theirs, abs=1e-4), tag


def test_accuracies_and_exact_matches_identical(work):
    results = {tag: json.loads((work / f"{tag}.json").read_text())["results"] for tag in LAYOUTS}
    results["hf"] = json.loads((work / "tp1.hf.json").read_text())["results"]
    keys = [("kanana_kmmlu_mini", "acc,none"), ("kanana_gsm8k_mini", "exact_match,strict-match"),
            ("kanana_gsm8k_mini", "exact_match,flexible-extract")]
    for task, metric in keys:
        assert len({results[tag][task][metric] for tag in results}) == 1, (task, metric)


def test_greedy_generations_identical(work):
    texts = {tag: [row["resps"] for row in _samples(d, "kanana_gsm8k_mini")] for tag, d in _runs(work).items()}
    assert texts["tp1"] == texts["hf"]
    assert texts["tp2"] == texts["hf"]
    assert texts["pp2"] == texts["hf"]
    assert len({str(t) for t in texts["hf"]}) >= 4  # varied outputs, so agreement is no coincidence


def test_results_json_is_lm_evals(work):
    out = json.loads((work / "tp2.json").read_text())
    for key in ("results", "configs", "versions", "n-samples", "n-shot"):
        assert key in out, key
    kmmlu = out["results"]["kanana_kmmlu_mini"]
    assert "acc_stderr,none" in kmmlu and 0.0 <= kmmlu["acc,none"] <= 1.0
    assert out["n-samples"]["kanana_kmmlu_mini"] == {"original": 24, "effective": 8}
    assert out["config"]["parallel"]["tensor_model_parallel_size"] == 2
