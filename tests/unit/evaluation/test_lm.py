"""KananaLM's request handling against a stand-in scorer whose log-probs are a known function
of (prefix, next token): batching, the shared-context grouping of one-token continuations,
left truncation at max_length, rolling windows, and the chat template round trip."""
import pytest
import torch

from megatron_kanana.data.tokenizer import load_tokenizer
from megatron_kanana.evaluation import lm as lm_module
from megatron_kanana.evaluation.lm import KananaLM
from tests.unit.data.conftest import build_hf_tokenizer

VOCAB = 512


def logp(prefix: list[int], token: int) -> float:
    """The stand-in model: log p(token | prefix), any deterministic function works."""
    return -(((sum(prefix) * 31 + len(prefix) * 7 + token) % 17) + 1) / 4.0


def fake_token_logprobs(chunks, inputs_BS, targets_BS, last_B, num_scored=None):
    """scoring.token_logprobs' contract: the num_scored slots ending at last_B[b] (slot 0 repeated
    before a short row's start), and the whole distribution at last_B[b]."""
    rows, width = inputs_BS.shape
    scored = num_scored or width
    out = torch.zeros(rows, scored)
    last = torch.zeros(rows, VOCAB)
    for b in range(rows):
        row = inputs_BS[b].tolist()
        for k in range(scored):
            s = max(0, int(last_B[b]) - (scored - 1) + k)
            out[b, k] = logp(row[:s + 1], int(targets_BS[b, s]))
        last[b] = torch.tensor([logp(row[:int(last_B[b]) + 1], v) for v in range(VOCAB)])
    greedy = torch.zeros(rows, scored, dtype=torch.bool)  # not exercised: every target below is non-greedy
    return out, greedy, last


class OneReplica:
    rank, world_size = 0, 1


@pytest.fixture
def lm(tmp_path, monkeypatch):
    monkeypatch.setattr(lm_module.scoring, "token_logprobs", fake_token_logprobs)
    tokenizer = load_tokenizer(build_hf_tokenizer(tmp_path / "tokenizer.json", vocab_size=VOCAB))
    return KananaLM([], tokenizer, max_length=12, batch_size=3, dp=OneReplica())


def expected(ctx: list[int], cont: list[int], max_length: int) -> float:
    window = (ctx + cont)[-(max_length + 1):]
    n = len(cont)
    return sum(logp(window[:i], window[i]) for i in range(len(window) - n, len(window)))


def test_scores_match_the_definition_with_grouping_and_truncation(lm):
    requests = [
        (("a", "b"), [5, 6, 7], [8]), (("a", "c"), [5, 6, 7], [9]), (("a", "d"), [5, 6, 7], [10]),  # one context
        (("e", "f"), [1, 2], [3, 4, 5]),
        (("g", "h"), list(range(20, 40)), [41, 42]),  # longer than max_length: truncated from the left
        (("i", "j"), [5, 6], [7, 11]),  # shares ctx + cont[:-1] with the first three
    ]
    got = lm._loglikelihood_tokens(requests)
    assert len(got) == len(requests)
    for (_, ctx, cont), (score, _greedy) in zip(requests, got):
        assert score == pytest.approx(expected(ctx, cont, lm.max_length), abs=1e-5)


def test_rolling_windows_cover_every_token_once(lm):
    class Req:
        def __init__(self, text):
            self.args = (text,)

    text = "대한민국은 아름다운 나라입니다. The module loads."
    tokens = lm.tok_encode(text)
    assert len(tokens) > lm.max_length  # several windows
    (total,) = lm.loglikelihood_rolling([Req(text)])
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
        token_list=tokens, prefix_token=lm.prefix_token_id, max_seq_len=lm.max_length, context_len=1)]
    assert sum(len(cont) for _, cont in windows) == len(tokens)
    assert total == pytest.approx(sum(expected(c, t, lm.max_length) for c, t in windows), abs=1e-4)


def test_chat_template_text_reencodes_to_the_rendered_ids(lm):
    from megatron_kanana.data.chat_template import Message, get_template

    history = [{"role": "user", "content": "3 더하기 4는?"}]
    text = lm.apply_chat_template(history)
    template = get_template("auto", lm.kanana_tokenizer)
    ids, _ = template.render([Message("user", "3 더하기 4는?")], lm.kanana_tokenizer, add_generation_prompt=True)
    assert lm.tok_encode(text) == ids
    assert lm.chat_template(True) == template.name


def test_a_sentencepiece_tokenizer_builds_the_lm(tmp_path, monkeypatch):
    """The demo's and the recipe's checkpoints carry SentencePiece models: KananaLM reads every
    tokenizer kind's encoder name (one only tokenizer.json had once made it fail on them)."""
    from megatron_kanana.cli import main
    from megatron_kanana.data.demo_corpus import demo_corpus_files

    monkeypatch.setattr(lm_module.scoring, "token_logprobs", fake_token_logprobs)
    files = [str(p) for p in demo_corpus_files()]
    assert main(["train-tokenizer", "--input", *files, "--vocab-size", "1000", "--output", str(tmp_path)]) == 0
    lm = KananaLM([], load_tokenizer(tmp_path), max_length=12, batch_size=3, dp=OneReplica())
    assert lm.encoder_name == "sentencepiece"
    assert lm.tok_encode("안녕하세요") == load_tokenizer(tmp_path).encode("안녕하세요")


def test_a_row_is_done_once_its_text_holds_a_stop_sequence(lm):
    done = lm._stop_sequence_check(["Question:", "\n\n"])
    assert not done(lm.tok_encode("The answer is 4"))
    assert done(lm.tok_encode("The answer is 4\n\nmore"))
    assert done(lm.tok_encode("4 Question: what"))
    assert lm._stop_sequence_check([]) is None
