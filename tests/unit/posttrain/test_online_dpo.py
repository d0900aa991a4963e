"""Online DPO's pure pieces: prompts rendered to the assistant header (bad ones counted),
rows whose loss mask is exactly the response, best-vs-worst pairing with ties weighted 0,
and the section's checks."""
import json

import pytest
import torch

from megatron_kanana.config.section import ConfigError
from megatron_kanana.data.tokenizer import load_tokenizer
from megatron_kanana.data.chat_template import get_template
from megatron_kanana.posttrain.conversations import ConversationError
from megatron_kanana.posttrain.online_dpo import OnlineDPOConfig
from megatron_kanana.posttrain.online_pairs import pair_rows, response_sample, sample_rows
from megatron_kanana.posttrain.prompts import load_prompts, stop_token

EOT, PAD = 6, 2


def test_prompts_render_to_the_assistant_header_and_bad_lines_are_counted(tmp_path, toy_tokenizer):
    tok = load_tokenizer(toy_tokenizer)
    lines = [{"prompt": "what is 1+2 ?"},
             {"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "thanks"}],
              "chosen": "3", "rejected": "bye"},  # a preference line is a prompt line too
             {"prompt": [{"role": "robot", "content": "bye"}]},
             {"prompt": [{"role": "user", "content": "thanks"}, {"role": "assistant", "content": "bye"}]},
             {"question": "what"},
             {"prompt": " ".join(["what"] * 40)}]
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    template = get_template("llama3", tok)
    prompts = load_prompts([str(path)], tok, template, seq_length=32, min_response_tokens=8)
    # <|begin_of_text|> <|start_header_id|> user <|end_header_id|> \n\n what is 1+2 ? <|eot_id|> + assistant header
    assert prompts.ids[0] == [3, 4, 9, 5, 7, 13, 14, 15, 16, 6, 4, 10, 5, 7]
    assert len(prompts) == 2
    counts = prompts.report.counts
    assert (counts["unknown_role"], counts["bad_prompt"], counts["not_a_prompt"], counts["too_long"],
            counts["malformed_json"]) == (1, 1, 1, 1, 1)
    assert stop_token(template, tok) == EOT
    with pytest.raises(ConversationError, match="unknown role"):
        load_prompts([str(path)], tok, template, seq_length=32, min_response_tokens=8, strict=True)


def test_response_rows_mask_exactly_the_response():
    row = response_sample([10, 11, 12], [20, 21, EOT], seq_length=8, pad=PAD)
    assert row["tokens"].tolist() == [10, 11, 12, 20, 21, PAD, PAD, PAD]
    assert row["labels"].tolist() == [11, 12, 20, 21, EOT, PAD, PAD, PAD]
    # trained labels: 20, 21 and the stop token, nothing of the prompt, no padding
    assert row["loss_mask"].tolist() == [0, 0, 1, 1, 1, 0, 0, 0]
    assert row["length"] == 5
    cut = response_sample([10, 11, 12], [20, 21, 22, 23, EOT], seq_length=5, pad=PAD)
    assert cut["labels"].tolist() == [11, 12, 20, 21, 22] and cut["loss_mask"].tolist() == [0, 0, 1, 1, 1]


def test_best_against_worst_and_ties_carry_no_weight():
    prompts = [[10, 11], [12]]
    responses = [[[20, EOT], [21, EOT], [22]], [[23, EOT], [23, EOT], [23, EOT]]]
    rewards = torch.tensor([[0.5, 2.0, -1.0], [1.0, 3.0, 0.0]])
    rows = sample_rows(prompts, responses, seq_length=6, pad=PAD)
    pairs, stats = pair_rows(responses, rows, rewards, stop_token=EOT)
    (chosen, rejected), (tie_c, tie_r) = pairs
    assert chosen["labels"][:3].tolist() == [11, 21, EOT] and rejected["labels"][:2].tolist() == [11, 22]
    assert float(chosen["pair_weight"]) == 1.0 and float(tie_c["pair_weight"]) == 0.0  # identical responses
    metrics = stats.to_metrics()
    assert metrics["tied prompts"] == 1 and metrics["best worst gap"] == pytest.approx(3.0)
    assert metrics["finished fraction"] == pytest.approx(5 / 6)
    assert metrics["sample reward"] == pytest.approx(5.5 / 6)
    with pytest.raises(ValueError, match="do not match"):
        pair_rows(responses, rows, rewards[:, :2], stop_token=EOT)


def _section(**over):
    base = {"prompts": ["p.jsonl"], "reward_model": "rm/checkpoints", "seq_length": 64, "max_new_tokens": 16}
    return OnlineDPOConfig.from_dict({**base, **over}, prefix="online_dpo")


@pytest.mark.parametrize("override, message", [
    ({"num_samples": 1}, "num_samples"), ({"temperature": 0.0}, "temperature"),
    ({"max_staleness": 2}, "max_staleness"), ({"max_new_tokens": 64}, "max_new_tokens"),
    ({"top_p": 0.0}, "top_p"), ({"beta": 0.0}, "beta"), ({"prompts": []}, "prompts"),
    ({"template": "chatml"}, "template")])
def test_section_refuses_bad_values(override, message):
    with pytest.raises(ConfigError, match=message):
        _section(**override)
    assert _section().num_samples == 4


class FakeSampler:
    """AsyncSampler's contract without a model: records what was started and by which weights."""

    def __init__(self):
        self.started, self._job = [], None

    @property
    def busy(self):
        return self._job is not None

    def start(self, policy_chunks, version, prompts, request):
        assert self._job is None, "started while busy"
        self.started.append((version, [p[0] for p in prompts]))
        responses = [[[p[0] + n, EOT] for n in range(request.num_samples)] for p in prompts]
        self._job = Samples(prompts, responses, version, seconds=0.01)

    def wait(self, timeout=None):
        job, self._job = self._job, None
        return job


def _source(max_staleness, num_prompts=8):
    from megatron_kanana.posttrain.online_batches import OnlineBatches

    cfg = _section(max_staleness=max_staleness, num_samples=3)
    prompts = [[100 + i, 11] for i in range(num_prompts)]
    sampler = FakeSampler()
    score = lambda tokens, lengths, mbs: tokens[:, 2].float()  # the first response token: higher is better
    return OnlineBatches(cfg, prompts, sampler, score, global_batch_size=4, micro_batch_size=2, seed=0, dp_rank=0,
                         dp_size=1, pad=PAD, stop_token=EOT, total_steps=4), sampler


from megatron_kanana.posttrain.async_sampler import Samples  # noqa: E402


def test_async_source_samples_one_step_ahead_and_sync_does_not():
    source, sampler = _source(max_staleness=1)
    staleness = []
    for step in range(4):
        batches, metrics = source.step_batches(step, policy_chunks=None, end_step=4)
        staleness.append(metrics["staleness"])
        assert len(batches) == 2 and batches[0]["tokens"].shape == (2, 64)  # 2 prompts → 2 pairs → 2 micro-batches
        assert batches[0]["pair_weight"].tolist() == [1.0, 1.0]
        first = batches[0]["tokens"][:, 0]  # the prompt's first token; the response follows the 2-token prompt
        assert batches[0]["tokens"][:, 2].tolist() == [first[0] + 2, first[1]]  # (best, worst) by reward
    assert staleness == [0, 1, 1, 1]
    # step k+1's prompts were started with version k; nothing is started past the last step
    assert [v for v, _ in sampler.started] == [0, 0, 1, 2]
    assert [p for _, p in sampler.started] == [[x[0] for x in source.prompts_for(s)] for s in range(4)]
    sync, sync_sampler = _source(max_staleness=0)
    assert [sync.step_batches(s, None, 4)[1]["staleness"] for s in range(3)] == [0, 0, 0]
    assert [v for v, _ in sync_sampler.started] == [0, 1, 2]


def test_a_jump_in_steps_discards_responses_meant_for_another_step():
    source, sampler = _source(max_staleness=1)
    source.step_batches(0, None, 4)  # leaves step 1's responses in flight
    _, metrics = source.step_batches(2, None, 4)  # e.g. resumed elsewhere: step 1's samples are not step 2's
    assert metrics["staleness"] == 0 and sampler.started[-2] == (2, [x[0] for x in source.prompts_for(2)])
