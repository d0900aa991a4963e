"""The passkey tasks (local_tasks/kanana_passkey_{128,256,512}): their data is what
tools/build_passkey_task.py writes from the shared generator, each prompt holds its key and
nothing else numeric, and lm-eval scores `acc` as "the key is the model's greedy answer"."""
import json
import re

import pytest

from megatron_kanana.evaluation import passkey
from tests.distributed.launch import REPO
from tests.scripts import load_script

TASK_DIR = REPO / "megatron_kanana" / "evaluation" / "local_tasks"
LENGTHS = (128, 256, 512)


def _builder():
    return load_script("tools/build_passkey_task.py")


def _committed(n: int) -> list[dict]:
    lines = (TASK_DIR / "kanana_passkey" / f"test_{n}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_committed_items_are_the_builders():
    built = _builder().items(64, 12345)
    assert {n: _committed(n) for n in LENGTHS} == built


@pytest.mark.parametrize("n", LENGTHS)
def test_each_prompt_has_its_length_and_only_its_key(n):
    vocabulary = set(passkey.vocabulary())
    for doc in _committed(n):
        words = doc["prompt"].split()
        assert len(words) == doc["words"] == n and set(words) <= vocabulary
        assert doc["prompt"].endswith("the pass key :")
        assert re.findall(r"\d+", doc["prompt"]) == [doc["key"], doc["key"]]  # the needle's two mentions


class _Retriever:
    """An lm-eval LM that reads the key from the needle and answers it for keys with an even
    last digit, and the next key for odd ones: `acc` must be exactly the even share."""

    def __new__(cls, seen: list):
        from lm_eval.api.model import LM

        class Scripted(LM):
            def loglikelihood(self, requests):
                out = []
                for request in requests:
                    context, continuation = request.args
                    seen.append((context, continuation))
                    key = re.search(r"the pass key : (\d+) \.", context).group(1)
                    answer = key if int(key) % 2 == 0 else str(int(key) + 1)
                    out.append((-1.0, continuation == f" {answer}"))
                return out

            def loglikelihood_rolling(self, requests):
                raise AssertionError("loglikelihood only")

            generate_until = loglikelihood_rolling

        return Scripted()


def test_lm_eval_acc_is_the_greedy_key():
    import lm_eval
    from lm_eval.tasks import TaskManager

    seen = []
    results = lm_eval.simple_evaluate(model=_Retriever(seen), tasks=["kanana_passkey"],
                                      task_manager=TaskManager(include_path=str(TASK_DIR), include_defaults=False),
                                      bootstrap_iters=0)
    for n in LENGTHS:
        docs = _committed(n)
        even = sum(int(d["key"]) % 2 == 0 for d in docs) / len(docs)
        assert 0 < even < 1
        assert results["results"][f"kanana_passkey_{n}"]["acc,none"] == pytest.approx(even)
    # the request is the prompt as written and the key after one space, so a tokenizer sees a word
    assert sorted(seen) == sorted((d["prompt"], " " + d["key"]) for n in LENGTHS for d in _committed(n))
