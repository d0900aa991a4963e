"""Verdicts follow from the measured numbers (recipe/claims.py), and the plan of sub-runs (arms.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from megatron_kanana.recipe import arms, claims, runner
from megatron_kanana.recipe.cli import selected_claims


def test_verdict_is_reproduced_only_when_every_check_holds():
    yes, no = claims.check("a", 1.0, "<", 2.0), claims.check("b", 3.0, "<", 2.0)
    assert (yes["holds"], no["holds"]) == (True, False)
    assert claims.verdict([yes, yes]) == claims.REPRODUCED
    assert claims.verdict([yes, no]) == claims.PARTLY
    assert claims.verdict([no]) == claims.NOT_REPRODUCED
    with pytest.raises(ValueError):
        claims.verdict([])


def test_staged_compares_the_quality_split_per_language():
    quality = {"en_guide": 4.0, "ko_guide": 5.0, "en_reference": 9.0, "ko_reference": 9.0}
    continued = {"en_guide": 4.1, "ko_guide": 4.9, "en_reference": 1.0, "ko_reference": 1.0}
    result = claims.staged(quality, continued)
    assert [c["holds"] for c in result["checks"]] == [True, False]  # the reference pages do not count
    assert result["verdict"] == claims.PARTLY


def test_ablations_and_tying_directions():
    ablated = {name: 5.0 for name in arms.ABLATIONS}
    assert claims.ablations(4.0, ablated)["verdict"] == claims.REPRODUCED
    assert claims.ablations(6.0, ablated)["verdict"] == claims.NOT_REPRODUCED
    assert claims.tying(4.0, 4.0)["verdict"] == claims.REPRODUCED  # tied may equal untied
    assert claims.tying(4.1, 4.0)["verdict"] == claims.NOT_REPRODUCED


def test_every_input_runs_before_its_user_and_only_what_the_claims_need():
    layout = arms.Layout(Path("/r"))
    full = arms.plan(layout, arms.QUICK, 1, arms.CLAIMS)
    seen: set[str] = set()
    for sub in full:
        assert set(sub.needs) <= seen, sub.name
        seen.add(sub.name)
    assert len(seen) == len(full)  # no sub-run twice
    assert [s.name for s in arms.plan(layout, arms.QUICK, 1, ("dus",))] == [
        "stage1", "dus_upscaled", "dus_continued", "shallow_continued", "deep_scratch"]
    assert arms.plan(layout, arms.QUICK, 1, ("accounting",)) == []
    tying = {s.name for s in arms.plan(layout, arms.QUICK, 1, ("tying",))}
    assert "stage2_continue" not in tying and {"distill_tied", "distill_kanana"} <= tying
    assert not any(name.startswith("bench_") for name in tying)


def test_the_staged_models_are_scored_on_the_miniature_benchmarks_by_kanana_eval():
    from megatron_kanana.evaluation.tasks import LOCAL_TASKS

    layout = arms.Layout(Path("/r"))
    staged = arms.plan(layout, arms.QUICK, 1, ("staged",))
    assert [s.name for s in staged] == ["stage1", "stage2_quality", "stage2_continue",
                                        "bench_stage1", "bench_stage2_quality", "bench_stage2_continue"]
    for sub in staged[3:]:
        arm = sub.name.removeprefix("bench_")
        assert sub.kind == "eval" and sub.needs == (arm,) and sub.output == layout.benchmark(arm)
        assert sub.argv == ("eval", str(layout.run(arm)), "--tasks", "kanana_help", "--include-path",
                            str(LOCAL_TASKS), "--output", str(layout.benchmark(arm)))
        assert not runner.is_finished(sub)  # no results file yet


def test_the_deep_model_from_scratch_gets_the_flops_of_stage_1_plus_dus():
    scale = arms.FULL
    shallow = arms.BASE_SHAPE.flops_per_token(arms.SEQ_LENGTH)
    deep = arms.deep_shape().flops_per_token(arms.SEQ_LENGTH)
    budget = scale.stage1_steps * shallow + scale.continue_steps * deep
    assert abs(arms.equal_flops_steps(scale) * deep - budget) <= deep / 2


def test_student_is_about_half_the_source_and_the_dus_map_is_solars():
    assert 0.4 < arms.student_shape().parameters / arms.BASE_SHAPE.parameters < 0.6
    from megatron_kanana.surgery.depth import parse_layer_spec

    assert len(parse_layer_spec(arms.DUS_LAYERS, arms.BASE_SHAPE.num_layers)) == arms.DUS_NUM_LAYERS


def test_unknown_claims_are_listed_with_the_known_ones():
    assert selected_claims("dus, staged") == ("staged", "dus")
    with pytest.raises(runner.RecipeError, match="known: staged, dus"):
        selected_claims("staged,tables")


def test_a_folder_of_another_configuration_is_refused_and_the_same_one_resumes(tmp_path):
    runner.claim_output(tmp_path / "r", {"seed": 1, "quick": True})
    runner.claim_output(tmp_path / "r", {"seed": 1, "quick": True})
    with pytest.raises(runner.RecipeError, match="seed 1 there vs 2 now"):
        runner.claim_output(tmp_path / "r", {"seed": 2, "quick": True})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    with pytest.raises(runner.RecipeError, match="not a recipe folder"):
        runner.claim_output(tmp_path / "other", {"seed": 1, "quick": True})


def test_units_an_ablation_keeps_that_kanana_does_not_per_layer_or_shared():
    from megatron_kanana.recipe.report import units_not_in

    kanana = {"hidden": [0, 1], "ffn": [0, 2], "heads": [0, 2]}
    per_layer = {"hidden": [0, 1], "ffn": [[0, 2], [1, 3]], "heads": [0, 3]}
    assert units_not_in(kanana, kanana) == {"hidden": 0, "ffn": 0, "heads": 0}
    assert units_not_in(per_layer, kanana) == {"hidden": 0, "ffn": 2, "heads": 1}
