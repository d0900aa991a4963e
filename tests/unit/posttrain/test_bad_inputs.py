"""Bad conversations: counted with file:line when lenient, errors with --strict; overlong ones
dropped or truncated as configured, and counted."""
from __future__ import annotations

import pytest

from megatron_kanana.posttrain.conversations import ConversationError
from megatron_kanana.posttrain.sft import SFTConfig
from megatron_kanana.posttrain.sft_dataset import SFTDataset, SFTDatasetError
from megatron_kanana.posttrain.sft_preprocess import preprocess_sft
from tests.unit.posttrain.conftest import TWO_TURNS, write_jsonl

GOOD = {"messages": [{"role": "user", "content": "thanks"}, {"role": "assistant", "content": "bye"}]}
BAD = {
    "malformed_json": '{"messages": [',
    "not_a_conversation": {"text": "hello"},
    "unknown_role": {"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "bye"}]},
    "empty_content": {"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "bye"}]},
    "no_assistant_turn": {"messages": [{"role": "user", "content": "thanks"}]},
}


def cfg(prefix, **kw) -> SFTConfig:
    return SFTConfig(data_prefixes=[str(prefix)], **{"seq_length": 20, **kw})


@pytest.mark.parametrize("problem", sorted(BAD))
def test_each_bad_line_is_counted_with_its_location(tmp_path, toy_tokenizer, problem):
    jsonl = write_jsonl(tmp_path / "in.jsonl", [GOOD, BAD[problem], GOOD])
    report, meta = preprocess_sft([jsonl], toy_tokenizer, str(tmp_path / "o"), cfg(tmp_path / "o"))
    assert report.counts[problem] == 1 and report.skipped == 1 and report.written == 2
    assert report.examples[problem][0].startswith(f"{jsonl}:2: ")
    assert meta["report"]["counts"][problem] == 1
    with pytest.raises(ConversationError, match=f"^{jsonl}:2: "):
        preprocess_sft([jsonl], toy_tokenizer, str(tmp_path / "s"), cfg(tmp_path / "s", strict=True))
    assert not (tmp_path / "s.tmp-sft").exists() and not (tmp_path / "s_sft.json").exists()


def test_overlong_dropped_or_truncated_and_counted(tmp_path, toy_tokenizer):
    # TWO_TURNS is 35 tokens; at seq_length 20 it is dropped; at 22 cut to 23 tokens, ending "3 <|eot_id|>"
    jsonl = write_jsonl(tmp_path / "in.jsonl", [TWO_TURNS, GOOD])
    report, _ = preprocess_sft([jsonl], toy_tokenizer, str(tmp_path / "d"), cfg(tmp_path / "d"))
    assert report.counts["too_long"] == 1 and report.written == 1
    report, _ = preprocess_sft([jsonl], toy_tokenizer, str(tmp_path / "t"), cfg(tmp_path / "t", seq_length=22,
                                                                                       on_overlong="truncate"))
    assert report.truncated == 1 and report.written == 2
    sample = SFTDataset(str(tmp_path / "t"), 22)[0]
    assert sample["labels"][sample["loss_mask"].bool()].tolist() == [17, 6]
    # cut before any assistant token: nothing to learn, so counted and skipped
    report, _ = preprocess_sft([jsonl], toy_tokenizer, str(tmp_path / "n"),
                               cfg(tmp_path / "n", seq_length=12, on_overlong="truncate"))
    assert report.counts["nothing_trained_after_truncation"] == 1


def test_nothing_left_is_an_error_and_incomplete_data_is_refused(tmp_path, toy_tokenizer):
    jsonl = write_jsonl(tmp_path / "in.jsonl", [BAD["no_assistant_turn"]])
    with pytest.raises(ConversationError, match="no conversation .* survived"):
        preprocess_sft([jsonl], toy_tokenizer, str(tmp_path / "e"), cfg(tmp_path / "e"))
    with pytest.raises(SFTDatasetError, match="did not finish"):
        SFTDataset(str(tmp_path / "e"), 20)


def test_dataset_built_for_longer_sequences_is_refused(tmp_path, toy_tokenizer):
    jsonl = write_jsonl(tmp_path / "in.jsonl", [GOOD])
    preprocess_sft([jsonl], toy_tokenizer, str(tmp_path / "o"), cfg(tmp_path / "o"))
    with pytest.raises(SFTDatasetError, match="built for seq_length 20"):
        SFTDataset(str(tmp_path / "o"), 16)
    with pytest.raises(FileExistsError, match="--overwrite"):
        preprocess_sft([jsonl], toy_tokenizer, str(tmp_path / "o"), cfg(tmp_path / "o"))
