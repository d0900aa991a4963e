"""What in-training evaluation logs of lm-eval's results: numbers per task, named for scalars."""
from megatron_kanana.evaluation.in_training import task_metrics


def test_task_metrics_keep_numbers_and_name_filters():
    results = {"results": {
        "kmmlu_mini": {"alias": "kmmlu_mini", "acc,none": 0.25, "acc_stderr,none": 0.1, "samples": 8},
        "gsm8k_mini": {"exact_match,strict-match": 0.5, "exact_match_stderr,strict-match": "N/A",
                       "exact_match,flexible-extract": 0.75},
        "ppl_mini": {"word_perplexity,none": float("inf"), "bits_per_byte,none": 1.5},
        "empty": {"alias": "empty"},
    }}
    assert task_metrics(results) == {
        "kmmlu_mini": {"acc": 0.25, "acc_stderr": 0.1},
        "gsm8k_mini": {"exact_match/strict-match": 0.5, "exact_match/flexible-extract": 0.75},
        "ppl_mini": {"bits_per_byte": 1.5},
    }
