"""The recipe's compute accounting (recipe/accounting.py) against the paper's published figures."""
from __future__ import annotations

import pytest

from megatron_kanana.models.presets import get_preset
from megatron_kanana.recipe import accounting


def test_the_papers_saving_and_share_from_its_sizes_and_tokens():
    figures = accounting.paper_accounting()
    assert round(100 * figures["saving_6n_paper_sizes"], 2) == 11.06
    assert round(100 * figures["share"], 2) == 6.67


def test_saving_is_zero_when_the_source_costs_what_the_deep_model_costs_and_nothing_continues():
    assert accounting.dus_saving([(5.0, 5.0)], 3.0, 0.0) == pytest.approx(0.0)
    # a free source: only the continued tokens cost anything
    assert accounting.dus_saving([(0.0, 1.0)], 3.0, 0.3) == pytest.approx(0.9)


def test_the_essence_line_through_the_flop_formula_charges_attention_and_the_lm_head():
    figures = accounting.paper_accounting()
    src, deep = get_preset("kanana-8b"), get_preset("kanana-essence-9.8b")
    assert figures["essence_flops_per_token"]["kanana-8b"] == src.flops_per_token(8192)
    expected = 1 - (3 * src.flops_per_token(8192) + 0.2 * deep.flops_per_token(8192)) / (3 * deep.flops_per_token(8192))
    assert figures["essence_saving_flop_formula"] == pytest.approx(expected)
    # the embedding and attention FLOPs do not grow with depth: more saved than by 6·N
    assert figures["essence_saving_flop_formula"] > figures["essence_saving_6n_presets"]


def test_a_distillation_entry_adds_the_teachers_forward():
    student, teacher = get_preset("tiny"), get_preset("tiny-untied")
    plain = accounting.ledger_entry("s", 1000, student, 64)
    distilled = accounting.ledger_entry("d", 1000, student, 64, teacher=teacher)
    assert plain.flops == 1000 * student.flops_per_token(64)
    assert distilled.flops - plain.flops == pytest.approx(1000 * teacher.flops_per_token(64) / 3)
    assert accounting.total_flops([plain, distilled]) == plain.flops + distilled.flops
