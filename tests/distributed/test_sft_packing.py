"""A packed SFT sequence on a real (tiny) megatron model: conversation B's logits inside the pack
equal its logits alone, so the SDPA attention honours the block-diagonal mask."""
from __future__ import annotations

import json
from pathlib import Path

from tests.distributed.launch import python

WORKER = Path(__file__).with_name("sft_packing_worker.py")


def test_packed_conversations_do_not_see_each_other(tmp_path):
    out = tmp_path / "result.json"
    python([str(WORKER), "--out", str(out)], timeout=180)
    r = json.loads(out.read_text())
    assert r["a_diff"] < 1e-4 * max(1.0, r["b_scale"])
    assert r["b_diff"] < 1e-4 * max(1.0, r["b_scale"])
    # without the mask B attends to A: its logits change, so the check above can fail
    assert r["b_diff_without_mask"] > 100 * max(r["b_diff"], 1e-6)
    # the SFT step's loss is the mean cross-entropy over the masked (non-padding) positions
    assert abs(r["step_loss"] - r["manual_loss"]) < 1e-4 * max(1.0, abs(r["manual_loss"]))
