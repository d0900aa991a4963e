"""Packing: first-fit placement, the block-diagonal causal mask, and packed samples that keep
attention and loss inside each conversation."""
from __future__ import annotations

import pytest
import torch

from megatron_kanana.posttrain.packing import FirstFitPacker, packed_attention_mask
from megatron_kanana.posttrain.sft import SFTConfig
from megatron_kanana.posttrain.sft_dataset import SFTDataset
from megatron_kanana.posttrain.sft_preprocess import preprocess_sft
from tests.unit.posttrain.conftest import TWO_TURNS, write_jsonl


def test_first_fit_places_in_the_first_bin_with_room():
    packer = FirstFitPacker(capacity=10)
    closed = []
    for name, length in [("a", 6), ("b", 5), ("c", 4), ("d", 3), ("e", 2)]:
        closed += packer.add(name, length)
    # a(6) opens bin 1; b(5) opens bin 2; c(4) fills bin 1 (closed); d(3) -> bin 2 (8); e(2) -> bin 2 (10, closed)
    assert closed == [["a", "c"], ["b", "d", "e"]]
    assert packer.finish() == []
    with pytest.raises(ValueError, match="does not fit"):
        packer.add("z", 11)


def test_bounded_window_emits_the_oldest_bin():
    packer = FirstFitPacker(capacity=10, max_open_bins=2)
    assert packer.add("a", 9) == [] and packer.add("b", 9) == []
    assert packer.add("c", 9) == [["a"]]
    assert packer.finish() == [["b"], ["c"]]


def test_mask_is_block_diagonal_causal():
    mask = packed_attention_mask(torch.tensor([[1, 1, 2, 2, 2, 0]]))
    assert mask.shape == (1, 1, 6, 6) and mask.dtype == torch.bool
    attend = (~mask[0, 0]).int().tolist()  # megatron convention: True = masked, so invert
    assert attend == [[1, 0, 0, 0, 0, 0],
                      [1, 1, 0, 0, 0, 0],
                      [0, 0, 1, 0, 0, 0],
                      [0, 0, 1, 1, 0, 0],
                      [0, 0, 1, 1, 1, 0],
                      [0, 0, 0, 0, 0, 1]]


def one_turn(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def test_packed_samples_never_cross_conversations(tmp_path, toy_tokenizer):
    records = [TWO_TURNS, one_turn("what is 1+2 ?", "3"), one_turn("thanks", "bye"), one_turn("be brief", "3")]
    jsonl = write_jsonl(tmp_path / "chat.jsonl", records)
    cfg = SFTConfig(data_prefixes=[str(tmp_path / "p")], seq_length=48, pack=True)
    preprocess_sft([jsonl], toy_tokenizer, str(tmp_path / "p"), cfg)
    ds = SFTDataset(str(tmp_path / "p"), 48)
    # lengths 35, 16, 13, 14 -> positions 34, 15, 12, 13: first fit gives [34, 12], [15, 13]
    assert len(ds) == 2
    assert [len(ids) for ids, _ in ds.conversations(0)] == [35, 13]
    assert [len(ids) for ids, _ in ds.conversations(1)] == [16, 14]
    for index in range(len(ds)):
        sample, convs = ds[index], ds.conversations(index)
        seg, at = sample["segment_ids"], 0
        for k, (ids, mask) in enumerate(convs, start=1):
            n = len(ids) - 1
            span = slice(at, at + n)
            assert (seg[span] == k).all()
            assert sample["position_ids"][span].tolist() == list(range(n))
            assert sample["tokens"][span].tolist() == ids[:-1].tolist()
            assert sample["labels"][span].tolist() == ids[1:].tolist()  # never the next conversation's token
            assert sample["loss_mask"][span].tolist() == mask[1:].tolist()
            at += n
        assert (seg[at:] == 0).all() and not sample["loss_mask"][at:].any()
        attend = ~packed_attention_mask(seg[None])[0, 0]
        cross = seg[:, None] != seg[None, :]
        assert not (attend & cross).any()


def test_unpacked_samples_have_no_segment_ids(tmp_path, toy_tokenizer):
    jsonl = write_jsonl(tmp_path / "chat.jsonl", [TWO_TURNS, one_turn("thanks", "bye")])
    cfg = SFTConfig(data_prefixes=[str(tmp_path / "u")], seq_length=40)
    preprocess_sft([jsonl], toy_tokenizer, str(tmp_path / "u"), cfg)
    ds = SFTDataset(str(tmp_path / "u"), 64)  # read at a longer length: padded
    assert len(ds) == 2 and "segment_ids" not in ds[0]
    # TWO_TURNS: trained labels are exactly 3 <|eot_id|> bye <|eot_id|>
    sample = ds[0]
    assert sample["labels"][sample["loss_mask"].bool()].tolist() == [17, 6, 19, 6]
    assert sample["tokens"].shape == (64,)
