"""Preference data: the rendered pair and its loss mask by hand, chosen/rejected interleaving in
batches, every bad pair counted with file:line (or refused with strict), overlong pairs, the CLI."""
from __future__ import annotations

import json

import pytest

from megatron_kanana.cli import main
from megatron_kanana.data.tokenizer import load_tokenizer
from megatron_kanana.posttrain import preference_synthetic
from megatron_kanana.posttrain.conversations import ConversationError
from megatron_kanana.posttrain.preference import PreferenceDataset, collate_pairs
from megatron_kanana.posttrain.preference_preprocess import preprocess_pairs
from megatron_kanana.posttrain.sft_dataset import SFTDataset, SFTDatasetError
from tests.unit.posttrain.conftest import write_jsonl

GOOD = {"prompt": "what is 1+2 ?", "chosen": "3", "rejected": "bye"}
BAD = {
    "malformed_json": '{"prompt": ',
    "not_a_pair": {"prompt": "what is 1+2 ?", "chosen": "3"},
    "unknown_role": {"prompt": [{"role": "tool", "content": "x"}, {"role": "user", "content": "thanks"}],
                     "chosen": "3", "rejected": "bye"},
    "empty_content": {"prompt": " ", "chosen": "3", "rejected": "bye"},
    "bad_prompt": {"prompt": [{"role": "user", "content": "thanks"}, {"role": "assistant", "content": "bye"}],
                   "chosen": "3", "rejected": "bye"},
    "no_response": {"prompt": "thanks", "chosen": [], "rejected": "bye"},
    "bad_response": {"prompt": "thanks", "chosen": [{"role": "user", "content": "3"}], "rejected": "bye"},
    "chosen_equals_rejected": {"prompt": "thanks", "chosen": "bye", "rejected": [{"role": "assistant",
                                                                                  "content": "bye"}]},
}
# <|begin_of_text|> <|start_header_id|> user <|end_header_id|> \n\n what is 1+2 ? <|eot_id|>
# <|start_header_id|> assistant <|end_header_id|> \n\n
PROMPT_IDS = [3, 4, 9, 5, 7, 13, 14, 15, 16, 6, 4, 10, 5, 7]


def test_rendered_pair_and_its_loss_mask_by_hand(tmp_path, toy_tokenizer):
    jsonl = write_jsonl(tmp_path / "in.jsonl", [GOOD])
    _, meta = preprocess_pairs([jsonl], toy_tokenizer, str(tmp_path / "p"), seq_length=20)
    assert meta["pairs"] == 1 and meta["template"] == "llama3" and meta["pad"] == 2
    assert meta["tokenizer_fingerprint"] == load_tokenizer(toy_tokenizer).fingerprint
    ds = PreferenceDataset(str(tmp_path / "p"), 20)
    assert len(ds) == 1
    for side, answer in zip(ds[0], (17, 19)):  # "3", "bye"
        ids = PROMPT_IDS + [answer, 6]  # the answer and its <|eot_id|>
        assert side["length"] == 15
        assert side["tokens"].tolist() == ids[:-1] + [2] * 5
        assert side["labels"][:15].tolist() == ids[1:]
        # trained: the labels "answer" and "<|eot_id|>" only (positions 13, 14); pad positions never
        assert side["loss_mask"].tolist() == [0.0] * 13 + [1.0, 1.0] + [0.0] * 5
        assert side["position_ids"].tolist() == list(range(20))


def test_batches_interleave_chosen_and_rejected(tmp_path, toy_tokenizer):
    records = [GOOD, {"prompt": "thanks", "chosen": "bye", "rejected": "3"},
               {"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "thanks"}],
                "chosen": [{"role": "assistant", "content": "bye"}, {"role": "assistant", "content": "bye"}],
                "rejected": "3"}]
    jsonl = write_jsonl(tmp_path / "in.jsonl", records)
    preprocess_pairs([jsonl], toy_tokenizer, str(tmp_path / "p"), seq_length=40)
    ds = PreferenceDataset(str(tmp_path / "p"), 48)  # read at a longer sequence than built for
    batch = collate_pairs([ds[i] for i in range(3)])
    assert {k: tuple(v.shape) for k, v in batch.items()} == {
        "tokens": (6, 48), "labels": (6, 48), "loss_mask": (6, 48), "position_ids": (6, 48), "lengths": (6,)}
    assert batch["tokens"].dtype == batch["lengths"].dtype == batch["labels"].dtype
    trained = [batch["labels"][r][batch["loss_mask"][r].bool()].tolist() for r in range(6)]
    assert trained == [[17, 6], [19, 6], [19, 6], [17, 6], [19, 6, 19, 6], [17, 6]]
    # the last real token of each row sits at lengths - 1; padding follows
    for r in range(6):
        n = int(batch["lengths"][r])
        assert batch["tokens"][r, n - 1] != 2 and (batch["tokens"][r, n:] == 2).all()
    with pytest.raises(ValueError, match="no pairs"):
        collate_pairs([])


@pytest.mark.parametrize("problem", sorted(BAD))
def test_each_bad_pair_is_counted_or_refused(tmp_path, toy_tokenizer, problem):
    jsonl = write_jsonl(tmp_path / "in.jsonl", [GOOD, BAD[problem], GOOD])
    report, meta = preprocess_pairs([jsonl], toy_tokenizer, str(tmp_path / "o"), seq_length=20)
    assert report.counts[problem] == 1 and report.skipped == 1 and report.written == 2
    assert report.examples[problem][0].startswith(f"{jsonl}:2: ")
    assert meta["report"]["counts"][problem] == 1 and len(PreferenceDataset(str(tmp_path / "o"), 20)) == 2
    with pytest.raises(ConversationError, match=f"^{jsonl}:2: "):
        preprocess_pairs([jsonl], toy_tokenizer, str(tmp_path / "s"), seq_length=20, strict=True)
    assert not (tmp_path / "s.tmp-pref").exists() and not (tmp_path / "s_pref.json").exists()


def test_overlong_pairs_dropped_or_cut_as_a_whole(tmp_path, toy_tokenizer):
    long_chosen = {"prompt": "what is 1+2 ?", "chosen": "3 3 3 3 3 3", "rejected": "bye"}  # 21 vs 16 tokens
    same_prefix = {"prompt": "what is 1+2 ?", "chosen": "3 3 3 3 bye", "rejected": "3 3 3 3 3"}
    jsonl = write_jsonl(tmp_path / "in.jsonl", [GOOD, long_chosen, same_prefix])
    report, _ = preprocess_pairs([jsonl], toy_tokenizer, str(tmp_path / "d"), seq_length=16)
    assert report.counts["too_long"] == 2 and report.written == 1  # the short rejected goes with its chosen
    with pytest.raises(ConversationError, match=f"^{jsonl}:2: .*seq_length"):
        preprocess_pairs([jsonl], toy_tokenizer, str(tmp_path / "x"), seq_length=16, strict=True)
    report, _ = preprocess_pairs([jsonl], toy_tokenizer, str(tmp_path / "t"), seq_length=16, on_overlong="truncate")
    # cut to 17 tokens: pair 2 still differs ("3 3 3" vs "bye"); pair 3's sides become equal
    assert report.truncated == 1 and report.counts["identical_after_truncation"] == 1 and report.written == 2
    chosen, rejected = PreferenceDataset(str(tmp_path / "t"), 16)[1]
    assert chosen["length"] == 16 and chosen["labels"][chosen["loss_mask"].bool()].tolist() == [17, 17, 17]
    # cut inside the prompt: no response token left in any pair, so nothing survives
    with pytest.raises(ConversationError, match="nothing_trained_after_truncation: 3"):
        preprocess_pairs([jsonl], toy_tokenizer, str(tmp_path / "n"), seq_length=12, on_overlong="truncate")


def test_nothing_left_and_the_sft_reader_refuses_preference_data(tmp_path, toy_tokenizer):
    jsonl = write_jsonl(tmp_path / "in.jsonl", [BAD["no_response"]])
    with pytest.raises(ConversationError, match="no pair .* survived"):
        preprocess_pairs([jsonl], toy_tokenizer, str(tmp_path / "e"), seq_length=20)
    preprocess_pairs([write_jsonl(tmp_path / "g.jsonl", [GOOD])], toy_tokenizer, str(tmp_path / "g"), seq_length=20)
    with pytest.raises(SFTDatasetError, match="not an sft dataset"):
        SFTDataset(str(tmp_path / "g"), 20)  # training SFT on rejected answers is never silent
    with pytest.raises(SFTDatasetError, match="built for seq_length 20"):
        PreferenceDataset(str(tmp_path / "g"), 10)


def test_synthetic_pairs_through_the_cli(tmp_path, bpe_tokenizer, capsys):
    pairs = preference_synthetic.pairs(40, seed=3)
    assert pairs == preference_synthetic.pairs(40, seed=3) and pairs != preference_synthetic.pairs(40, seed=4)
    assert all(p["chosen"] != p["rejected"] for p in pairs) and any(isinstance(p["prompt"], list) for p in pairs)
    jsonl, prefix = tmp_path / "pairs.jsonl", str(tmp_path / "out" / "pref")
    assert main(["pref-synthetic", "--num", "30", "--output", str(jsonl), "--seed", "1"]) == 0
    with open(jsonl, "a", encoding="utf-8") as f:
        f.write(json.dumps({"prompt": "x", "chosen": "y", "rejected": "y"}) + "\n")
    args = ["pref-preprocess", "--input", str(jsonl), "--tokenizer", bpe_tokenizer, "--output-prefix", prefix,
            "--seq-length", "96"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "31 pairs read, 30 written" in out and f"chosen_equals_rejected: 1 (e.g. {jsonl}:31:" in out
    meta = json.loads((tmp_path / "out" / "pref_pref.json").read_text())
    assert meta["format"] == "kanana-pref-1" and meta["template"] == "plain" and meta["pairs"] == 30
    assert len(PreferenceDataset(prefix, 96)) == 30
    assert main(args) == 1 and "--overwrite" in capsys.readouterr().err
    assert main(args + ["--strict", "--overwrite"]) == 1 and f"{jsonl}:31:" in capsys.readouterr().err
