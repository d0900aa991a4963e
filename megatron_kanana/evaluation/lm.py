"""lm-evaluation-harness's `LM` over this project's megatron-core model, at any TP/PP/DP.

    lm = KananaLM(chunks, tokenizer, max_length=4096, batch_size=8)
    results = lm_eval.simple_evaluate(model=lm, tasks=[...])

Requests are batched the way lm-eval's HF backend batches them (its `Collator`:
longest first; one forward for every one-token continuation of a shared context;
generation grouped by generation kwargs), and inputs are built and truncated as
it builds them, so the two backends score the same token sequences:

- loglikelihood: (context + continuation)[-(max_length + 1):][:-1] is the input,
  the continuation's tokens are the targets of its last len(continuation) slots.
- loglikelihood_rolling: lm-eval's disjoint rolling windows of max_length, summed.
- generate_until: KV-cached batched greedy generation (mcore/generate.py), the
  context left-truncated to max_length - max_gen_toks; a row ends at the end-of-text
  token or once its text holds a stop sequence (the batch ends when every row has),
  and the text is cut at the first stop sequence (lm-eval's own post-processing).

lm-eval's rank/world size are the data-parallel ones (mcore/scoring.py): every rank
of one model replica receives the same requests.
"""
from __future__ import annotations

from typing import Optional

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import Collator, handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from megatron_kanana.data.tokenizer import Tokenizer
from megatron_kanana.mcore import scoring

Request = tuple[tuple[str, str], list[int], list[int]]  # lm-eval's (strings, context ids, continuation ids)


class KananaLM(TemplateLM):
    backend = "causal"
    MAX_GEN_TOKS = 256  # lm-eval's HF default when a task names none

    def __init__(self, chunks: list[torch.nn.Module], tokenizer: Tokenizer, max_length: int, batch_size: int,
                 chat_template=None, dp: Optional[scoring.DataParallelView] = None, name: str = "kanana"):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.chunks, self.kanana_tokenizer, self.name = chunks, tokenizer, name
        self._max_length, self._batch_size = max_length, batch_size
        self._template = chat_template
        self._dp = dp or scoring.DataParallelView()
        self._rank, self._world_size = self._dp.rank, self._dp.world_size
        # Build the encoder now (tiktoken's, with its self-check, where exact: data/fast_bpe.py), as
        # HFLM loads its tokenizer in its constructor, not inside the first request lm-eval makes.
        self.encoder_name = tokenizer.encoder_name

    # --- what lm-eval reads -------------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.kanana_tokenizer.eod

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer_name(self) -> str:
        return f"{self.name}-{self.kanana_tokenizer.fingerprint}"

    def chat_template(self, chat_template=False) -> str:
        """The name lm-eval records (and hashes into its request cache) for the template in use."""
        return self._chat().name

    def _chat(self):
        from megatron_kanana.data.chat_template import get_template

        return self._template or get_template("auto", self.kanana_tokenizer)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The conversation rendered by the project's chat template (data/chat_template.py), as text
        whose special tokens re-encode to themselves."""
        from megatron_kanana.data.chat_template import Message

        ids, _ = self._chat().render([Message(m["role"], m["content"]) for m in chat_history], self.kanana_tokenizer,
                                 add_generation_prompt=add_generation_prompt)
        return self.kanana_tokenizer.decode(ids)

    def tok_encode(self, string: str, add_special_tokens: Optional[bool] = None, **kwargs) -> list[int]:
        return self.kanana_tokenizer.encode(string)

    def all_gather(self, tensor):
        return self._dp.all_gather(tensor)

    def gather_object(self, obj, dst=0):
        return self._dp.gather_object(obj, dst)

    def barrier(self) -> None:
        self._dp.barrier()

    def get_model_info(self) -> dict:
        return {"model_num_parameters": sum(p.numel() for c in self.chunks for p in c.parameters()),
                "model_dtype": str(next(self.chunks[0].parameters()).dtype), "tokenizer_encoder": self.encoder_name}

    # --- loglikelihood ------------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False,
                              override_bs: Optional[int] = None) -> list[tuple[float, bool]]:
        collator = Collator(requests, sort_fn=_longest_first, group_by="contexts",
                            group_fn=lambda req: req[1] + req[2][:-1])
        results = []
        for chunk in collator.get_batched(n=override_bs or self._batch_size):
            windows = [(ctx + cont)[-(self.max_length + 1):] for _, ctx, cont in chunk]
            width = max(len(w) - 1 for w in windows)
            inputs = torch.zeros(len(chunk), width, dtype=torch.long)
            targets = torch.zeros(len(chunk), width, dtype=torch.long)
            for i, window in enumerate(windows):
                inputs[i, :len(window) - 1] = torch.tensor(window[:-1])
                targets[i, :len(window) - 1] = torch.tensor(window[1:])
            last = torch.tensor([len(w) - 2 for w in windows])
            # the representative of a group has its longest continuation (lm-eval's Collator), so the
            # last `scored` slots of every row hold every continuation token of its group
            scored = max(min(len(cont), len(w) - 1) for (_, _, cont), w in zip(chunk, windows))
            logp, greedy, last_dist = scoring.token_logprobs(self.chunks, inputs, targets, last, scored)
            for i, (strings, ctx, cont) in enumerate(chunk):
                # every cached request shares ctx + cont[:-1] with this row: their continuations are
                # trailing slices of the same slots, differing only in the last token
                for req_strings, member_cont, _ in collator.get_cache(req_str=strings, cxt_toks=ctx,
                                                                      cont_toks=cont, logits=torch.zeros(1, 1, 1)):
                    n = min(len(member_cont), len(windows[i]) - 1)
                    token = member_cont[-1]
                    score = float(logp[i, scored - n:scored - 1].sum() + last_dist[i, token])
                    is_greedy = bool(greedy[i, scored - n:scored - 1].all()) and int(last_dist[i].argmax()) == token
                    results.append((score, is_greedy))
                    if req_strings is not None:
                        self.cache_hook.add_partial("loglikelihood", req_strings, (score, is_greedy))
        return collator.get_original(results)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, counts = [], []
        for (string,) in [req.args for req in requests]:
            rolling = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length, context_len=1)]
            windows += [(None, ctx, cont) for ctx, cont in rolling]
            counts.append(len(rolling))
        scores = [score for score, _ in self._loglikelihood_tokens(windows)] if windows else []
        totals, start = [], 0
        for request, count in zip(requests, counts):
            totals.append(sum(scores[start:start + count]))
            start += count
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, totals[-1])
        return totals

    # --- generation ---------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from megatron_kanana.mcore.generate import generate

        collator = Collator([req.args for req in requests], sort_fn=lambda req: (-len(self.tok_encode(req[0])), req[0]),
                            group_by="gen_kwargs", group_fn=lambda req: req[1])
        eos = self.kanana_tokenizer.decode([self.eot_token_id])
        results = []
        for chunk in collator.get_batched(n=self._batch_size):
            contexts, all_kwargs = zip(*chunk)
            kwargs = normalize_gen_kwargs(all_kwargs[0], self.MAX_GEN_TOKS)
            if kwargs.get("do_sample") or kwargs.get("temperature", 0.0) > 0:
                raise ValueError(f"generation kwargs {all_kwargs[0]}: only greedy generation is supported")
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_gen = kwargs.pop("max_gen_toks")
            if max_gen >= self.max_length:
                raise ValueError(f"max_gen_toks {max_gen} must be below the model's context {self.max_length}")
            prompts = [self.tok_encode(c)[-(self.max_length - max_gen):] for c in contexts]
            out = generate(self.chunks, prompts, max_gen, stop_token=self.eot_token_id,
                           row_done=self._stop_sequence_check(until))
            for context, tokens in zip(contexts, out.tokens):
                if self.eot_token_id in tokens:
                    tokens = tokens[:tokens.index(self.eot_token_id)]
                text = postprocess_generated_text(generation=self.kanana_tokenizer.decode(tokens), stop=until,
                                                  think_end_token=None)
                results.append(text)
                self.cache_hook.add_partial("generate_until", (context, all_kwargs[0]), text)
        return collator.get_original(results)

    def _stop_sequence_check(self, until: list[str]):
        """A row is done once its text holds a stop sequence: the text lm-eval keeps is cut at the
        first one, so later tokens cannot change it. HF's backend stops its batch the same way
        (its MultiTokenEOSCriteria), so a batch does not run on to max_gen_toks after every row
        has answered."""
        if not until:
            return None
        decode = self.kanana_tokenizer.decode
        return lambda tokens: any(stop in decode(tokens) for stop in until)


def _longest_first(req: Request):
    tokens = req[1] + req[2]
    return -len(tokens), tuple(tokens)
