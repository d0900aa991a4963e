"""The demo's arithmetic task (local_tasks/kanana_arith_mini): its data is what
tools/build_arith_task.py writes, held out from the demo's SFT data, and lm-eval scores it
as intended (the last number of the answer, so a hedged wrong answer is wrong)."""
import json

from megatron_kanana.posttrain.synthetic import HEDGE, conversations
from tests.distributed.launch import REPO
from tests.scripts import load_script

TASK_DIR = REPO / "megatron_kanana" / "evaluation" / "local_tasks"


def _builder():
    return load_script("tools/build_arith_task.py")


def _committed() -> list[dict]:
    return [json.loads(line) for line in (TASK_DIR / "kanana_arith_mini" / "test.jsonl").read_text().splitlines()]


def test_committed_items_are_the_builders_and_held_out_from_the_demo_sft_data():
    builder = _builder()
    assert _committed() == builder.items(40, 2026)
    trained = {m["content"] for c in conversations(**builder.DEMO_SFT_TRAIN) for m in c["messages"]}
    assert not trained & {item["question"] for item in _committed()}
    assert {item["language"] for item in _committed()} == {"ko", "en"}


class _Answers:
    """An lm-eval LM answering in the SFT data's style: right for even items, hedged and off by
    one for odd ones (in the order lm-eval asks). English answers repeat the operands first, so
    a filter taking the first number would score them wrong."""

    def __new__(cls, answers: dict):
        from lm_eval.api.model import LM

        class Scripted(LM):
            def loglikelihood(self, requests):
                raise AssertionError("generate_until only")

            loglikelihood_rolling = loglikelihood

            def generate_until(self, requests):
                out = []
                for i, request in enumerate(requests):
                    question = request.args[0]
                    language, value = answers[question]
                    wrong = str(int(value) + 1)
                    if language == "ko":  # "3입니다."
                        right_text, wrong_text = f"{value}입니다.", f"{wrong}입니다."
                    else:  # "1 plus 2 is 3.": the operands come first
                        said = question.removeprefix("What is ").removesuffix("?")
                        right_text, wrong_text = f"{said} is {value}.", f"{said} is {wrong}."
                    out.append(right_text if i % 2 == 0 else HEDGE[language].format(wrong_text))
                return out

        return Scripted()


def test_lm_eval_scores_the_last_number_so_hedged_wrong_answers_fail():
    import lm_eval
    from lm_eval.tasks import TaskManager

    answers = {item["question"]: (item["language"], item["answer"]) for item in _committed()}
    results = lm_eval.simple_evaluate(model=_Answers(answers), tasks=["kanana_arith_mini"],
                                      task_manager=TaskManager(include_path=str(TASK_DIR), include_defaults=False),
                                      bootstrap_iters=0)
    assert results["results"]["kanana_arith_mini"]["exact_match,last-number"] == 0.5
