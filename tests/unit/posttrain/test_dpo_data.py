"""DPO batches: a step's pairs split over data-parallel ranks and micro-batches with both
rows of a pair always in one micro-batch; datasets from another tokenizer are refused;
the step count follows epochs over pairs."""
import pytest

from megatron_kanana.config.section import ConfigError
from megatron_kanana.posttrain.dpo import DPOConfig, build_dpo_datasets, dpo_steps
from megatron_kanana.posttrain.preference import step_pair_micro_batches
from megatron_kanana.posttrain.preference_preprocess import preprocess_pairs
from megatron_kanana.training.data import DataConfig
from megatron_kanana.data.tokenizer import load_tokenizer
from tests.unit.posttrain.conftest import write_jsonl

PAIRS = [{"prompt": "what is 1+2 ?", "chosen": "3", "rejected": "bye"},
         {"prompt": "thanks", "chosen": "bye", "rejected": "3"}] * 5  # 10 pairs


@pytest.fixture
def prefix(tmp_path, toy_tokenizer) -> str:
    preprocess_pairs([write_jsonl(tmp_path / "in.jsonl", PAIRS)], toy_tokenizer, str(tmp_path / "p"), seq_length=20)
    return str(tmp_path / "p")


def test_step_rows_split_over_ranks_in_whole_pairs(prefix, toy_tokenizer):
    cfg = DPOConfig.from_dict({"data_prefixes": [prefix], "seq_length": 20})
    pairs, valid = build_dpo_datasets(cfg, seed=3, num_train_pairs=12, tokenizer_fingerprint=None)
    assert valid == {} and len(pairs) == 12
    data = DataConfig.from_dict({"tokenizer": toy_tokenizer, "seq_length": 20, "micro_batch_size": 2,
                                 "global_batch_size": 4})
    seen = []
    for rank in (0, 1):  # step 1 (the second) of 4 rows = 2 pairs: one pair per rank, one micro-batch each
        batches = step_pair_micro_batches(pairs, 1, data, rank, 2)
        assert len(batches) == 1 and batches[0]["tokens"].shape == (2, 20)
        chosen, rejected = pairs[2 + rank]
        assert batches[0]["tokens"][0].tolist() == chosen["tokens"].tolist()
        assert batches[0]["tokens"][1].tolist() == rejected["tokens"].tolist()
        seen.append(batches[0]["labels"][batches[0]["loss_mask"].bool()].tolist())
    assert all(len(s) == 4 for s in seen)  # answer + end of turn, chosen then rejected
    assert dpo_steps(cfg.replace(epochs=2.0), global_batch_size=8) == 5  # 20 pairs, 4 a step


def test_datasets_of_another_tokenizer_are_refused(prefix, bpe_tokenizer):
    cfg = DPOConfig.from_dict({"data_prefixes": [prefix], "seq_length": 20})
    with pytest.raises(ConfigError, match=f"dpo: {prefix} was tokenized with .* not with data.tokenizer"):
        build_dpo_datasets(cfg, 0, 4, load_tokenizer(bpe_tokenizer).fingerprint)
