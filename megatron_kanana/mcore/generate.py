"""KV-cached batched generation on megatron-core GPTModels, at any TP/PP/DP.

    out = generate(chunks, [[5, 9, 2], [7]], max_new_tokens=16,
                   sampling=SamplingSettings(temperature=0.8, top_p=0.9, seed=1), stop_token=eod)
    out.tokens[i], out.lengths[i]          # new tokens of row i (its stop token included)
    generate(..., row_done=lambda new: "\n\n" in tok.decode(new))   # a row also ends where this says

Every rank of a model replica calls it with the same prompts; data-parallel
replicas generate their own prompts independently (no DP collective is used).

- KV cache: megatron-core's StaticInferenceContext passed as `inference_context`;
  Attention writes each step's keys/values into it and attends over the cache.
  The first step encodes all prompts at once, then one token per step.
- Batching: prompts are left-padded so every row's last prompt token sits in
  the same slot (the static context has one sequence offset for the batch).
  For each row to equal generating it alone, (1) an attention mask hides its
  pad slots (a pad slot sees only itself, so no row of scores is all -inf), and
  (2) the rotary embedding is given per row: slot j of row i rotates as
  position j - pad_i, so RoPE sees the same positions as the row alone.
- TP: the last stage's output layer gathers only the last position's logits
  (`materialize_only_last_token_logits`); TP rank 0 picks the tokens and
  broadcasts them over the TP group. Sampling with identical generators on
  every TP rank would also agree on CPU, but a broadcast of B ints costs
  nothing and does not rest on bitwise-identical sampling kernels.
- PP: each step, stages pass [s, B, h] activations with send/recv over the
  pipeline group; the chosen tokens are broadcast from the last stage so every
  stage feeds the same ids (and stops at the same step).
  Interleaved layouts (VPP > 1) are refused.
- Threads: it may run in a thread beside training (on CPU it enters the CPU
  backend's mode for its thread); give it a model built with its own groups.
- `groups` (a ProcessGroupCollection, e.g. runtime.duplicate_model_groups())
  makes every collective here use those groups instead of megatron's global
  ones; build the model with the same groups (`build_model(..., groups=)`).
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist
from megatron.core.inference.contexts import StaticInferenceContext
from megatron.core.process_groups_config import ProcessGroupCollection

from megatron_kanana.mcore import cpu_backend, runtime
from megatron_kanana.mcore.sampling import SamplingSettings, choose_tokens, seen_ids

PAD_ID = 0  # what fills pad slots; never attended to by a real token, so any valid id works


@dataclasses.dataclass(frozen=True)
class Generation:
    tokens: list[list[int]]  # per row: the new tokens, up to and including the stop token
    lengths: list[int]  # len(tokens[i])


@torch.no_grad()
def generate(chunks: list[torch.nn.Module], prompts: list[list[int]], max_new_tokens: int,
             sampling: SamplingSettings = SamplingSettings(), stop_token: Optional[int] = None,
             groups: Optional[ProcessGroupCollection] = None,
             row_done: Optional[Callable[[list[int]], bool]] = None) -> Generation:
    """New tokens for each prompt; call on every rank of the model replica with the same arguments.

    A row ends at `stop_token` or once `row_done(its new tokens)` is true (a stop sequence, say);
    generation ends when every row has. Every rank holds the same tokens, so every rank reaches
    the same decision without a collective, provided `row_done` is deterministic."""
    model = _single_chunk(chunks)
    _check_request(model, prompts, max_new_tokens)
    groups = groups or runtime.model_groups()
    batch = len(prompts)
    tokens: list[list[int]] = [[] for _ in prompts]
    if max_new_tokens == 0:
        return Generation(tokens, [0] * batch)
    prompt_len = max(len(p) for p in prompts)
    total = prompt_len + max_new_tokens
    pads = torch.tensor([prompt_len - len(p) for p in prompts])
    ids = torch.full((batch, total), PAD_ID, dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, pads[i]:prompt_len] = torch.tensor(prompt, dtype=torch.long)
    context = StaticInferenceContext(batch, total)
    generator = sampling.generator()
    repeats = _Repeats(prompts) if sampling.penalizes_repeats else None
    finished = [False] * batch
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with _cpu_placement(), _per_row_rotary(model, pads.to(device)):
            steps = _Steps(model, ids.to(device), pads.to(device), prompt_len, groups)
            start, end = 0, prompt_len
            for _ in range(max_new_tokens):
                logits = steps.forward(start, end, context)
                context.sequence_len_offset = end
                context.enable_decode_mode()
                chosen = _agree_on_tokens(model, logits, batch, sampling, generator, groups, repeats)
                steps.ids_BT[:, end] = chosen.to(device)
                for i, token in enumerate(chosen.tolist()):
                    if not finished[i]:
                        tokens[i].append(token)
                        finished[i] = ((stop_token is not None and token == stop_token)
                                       or (row_done is not None and row_done(tokens[i])))
                if all(finished):
                    break
                start, end = end, end + 1
    finally:
        model.train(was_training)
    return Generation(tokens, [len(t) for t in tokens])


def greedy_generate(chunks: list[torch.nn.Module], prompt: list[int], max_new_tokens: int,
                    stop_token: Optional[int] = None, max_length: Optional[int] = None) -> list[int]:
    """One prompt, greedy. With `max_length`, the prompt is cut to its last
    max_length - max_new_tokens tokens so prompt + output fit the cache."""
    if max_length is not None:
        prompt = prompt[-max(1, max_length - max_new_tokens):]
        max_new_tokens = min(max_new_tokens, max_length - len(prompt))
    return generate(chunks, [prompt], max_new_tokens, stop_token=stop_token).tokens[0]


def _single_chunk(chunks: list[torch.nn.Module]) -> torch.nn.Module:
    if len(chunks) != 1:
        raise NotImplementedError(f"generate: got {len(chunks)} model chunks; interleaved pipeline "
                                  "layouts (virtual_pipeline_model_parallel_size > 1) are not supported")
    model = chunks[0]
    while hasattr(model, "module"):  # DDP / Float16Module wrappers
        model = model.module
    if model.config.sequence_parallel:
        raise NotImplementedError("generate: sequence_parallel models are not supported; build one without")
    return model


def _check_request(model: torch.nn.Module, prompts: list[list[int]], max_new_tokens: int) -> None:
    if not prompts:
        raise ValueError("generate: no prompts")
    if max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}")
    vocab = model.vocab_size
    for i, prompt in enumerate(prompts):
        if not prompt:
            raise ValueError(f"generate: prompt {i} is empty")
        if min(prompt) < 0 or max(prompt) >= vocab:
            raise ValueError(f"generate: prompt {i} has token ids outside [0, {vocab})")
    limit = model.max_sequence_length
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > limit:
        raise ValueError(f"generate: the longest prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) "
                         f"exceeds the model's max sequence length {limit}")


@contextlib.contextmanager
def _per_row_rotary(model: torch.nn.Module, pads_B: torch.Tensor) -> Iterator[None]:
    """Make the model's RoPE table per row: slot j of row i rotates as position j - pad_i.

    megatron-core's static-batching attention slices the table by cache slot
    ([offset:offset+s] for queries, [:end] for keys) and broadcasts it over the
    batch, so a [S, B, 1, D] table in place of [S, 1, 1, D] gives each row its own
    positions with the same cos/sin values as the row alone (bit-identical rotation).
    The table holds the scaled frequencies of `rope_scaling` (mcore/rope.py); YaRN's
    attention factor is applied by the attention module from the config, as in training.
    """
    rope = model.rotary_pos_emb
    original = rope.forward
    tables = {}  # every step asks for the same table (the cache's length): gather it once

    def forward(max_seq_len, *args, **kwargs):
        key = (max_seq_len, args, tuple(sorted(kwargs.items())))
        if key not in tables:
            out = original(max_seq_len, *args, **kwargs)  # [S, 1, 1, D]; YaRN's is (table, mscale)
            table = out[0] if isinstance(out, tuple) else out
            slots = torch.arange(table.shape[0], device=table.device)
            positions = (slots[:, None] - pads_B.to(table.device)[None, :]).clamp(min=0)  # [S, B]
            rows = table[:, 0, 0, :][positions].unsqueeze(2)
            tables[key] = (rows, *out[1:]) if isinstance(out, tuple) else rows
        return tables[key]

    rope.forward = forward
    try:
        yield
    finally:
        del rope.forward  # back to the class's method


def _cpu_placement():
    """The CPU backend's CUDA-to-CPU rewrite for this thread (generation may run in a thread
    beside training), unless this thread has it already: the thread that enabled the backend
    does, and a second copy of the mode would run every torch call through both."""
    if torch.device("cuda").type == "cpu":  # the rewrite is active here (a no-op mode check)
        return contextlib.nullcontext()
    return cpu_backend.in_this_thread()


def attention_mask(pads_B: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """[B, 1, end-start, end] mask for query slots start..end-1 over key slots 0..end-1,
    True = masked out (megatron's convention): causal, pad keys hidden, pad slots see themselves."""
    q = torch.arange(start, end, device=pads_B.device)[:, None]
    k = torch.arange(end, device=pads_B.device)[None, :]
    real_key = k[None] >= pads_B[:, None, None]
    allowed = (k <= q)[None] & (real_key | (k == q)[None])
    return ~allowed[:, None]


def _pipeline_neighbours(pp: dist.ProcessGroup) -> tuple[int, int, int]:
    """(my index in the pipeline group, global rank of the previous stage, of the next stage)."""
    me, size = dist.get_rank(group=pp), dist.get_world_size(group=pp)
    prev = dist.get_global_rank(pp, me - 1) if me > 0 else -1
    nxt = dist.get_global_rank(pp, me + 1) if me < size - 1 else -1
    return me, prev, nxt


class _Steps:
    """What every step of one generate() call reuses: the ids, the per-slot positions, the
    prefill mask and which cache slots are padding (a decode step's whole mask), and the
    pipeline neighbours. Built once per call, so a step issues no setup ops of its own."""

    def __init__(self, model: torch.nn.Module, ids_BT: torch.Tensor, pads_B: torch.Tensor, prompt_len: int,
                 groups: ProcessGroupCollection):
        self.model, self.ids_BT, self.groups = model, ids_BT, groups
        slots = torch.arange(ids_BT.shape[1], device=ids_BT.device)
        self.positions_BT = (slots[None, :] - pads_B[:, None]).clamp(min=0)
        self.prefill_mask = attention_mask(pads_B, 0, prompt_len)
        # a decode step's query slot is past every pad, so its mask is attention_mask(pads, q, q + 1):
        # only the pad keys are hidden
        self.pad_key_B11T = (slots[None, :] < pads_B[:, None])[:, None, None, :]
        _, self.prev, self.next = _pipeline_neighbours(groups.pp)

    def forward(self, start: int, end: int, context: StaticInferenceContext) -> Optional[torch.Tensor]:
        """This stage's part of one step over slots start..end-1; the last stage returns the
        last slot's full-vocabulary logits [B, V]."""
        model = self.model
        batch = self.ids_BT.shape[0]
        if not model.pre_process:
            hidden = torch.empty(end - start, batch, model.config.hidden_size, dtype=model.config.pipeline_dtype,
                                 device=runtime.comm_device())
            dist.recv(hidden, src=self.prev, group=self.groups.pp)
            model.set_input_tensor(hidden.to(self.ids_BT.device))
        mask = self.prefill_mask if start == 0 else self.pad_key_B11T[..., :end]
        out = model(self.ids_BT[:, start:end], self.positions_BT[:, start:end], mask, inference_context=context,
                    runtime_gather_output=True)
        if not model.post_process:
            dist.send(out.contiguous().to(runtime.comm_device()), dst=self.next, group=self.groups.pp)
            return None
        return out[:, -1, :]


def _agree_on_tokens(model: torch.nn.Module, logits_BV: Optional[torch.Tensor], batch: int,
                     sampling: SamplingSettings, generator: torch.Generator,
                     groups: ProcessGroupCollection, repeats: Optional["_Repeats"] = None) -> torch.Tensor:
    """TP rank 0 of the last stage chooses; TP then PP broadcasts give every rank the same ids."""
    chosen = torch.empty(batch, dtype=torch.long, device=runtime.comm_device())
    if model.post_process:
        if dist.get_rank(group=groups.tp) == 0:
            seen = repeats.seen(logits_BV.shape[-1]) if repeats is not None else None
            chosen.copy_(choose_tokens(logits_BV, sampling, generator, seen))
        if dist.get_world_size(group=groups.tp) > 1:
            dist.broadcast(chosen, src=dist.get_global_rank(groups.tp, 0), group=groups.tp)
    pp_size = dist.get_world_size(group=groups.pp)
    if pp_size > 1:
        dist.broadcast(chosen, src=dist.get_global_rank(groups.pp, pp_size - 1), group=groups.pp)
    chosen = chosen.cpu()
    if repeats is not None:
        repeats.add(chosen)
    return chosen


class _Repeats:
    """Which ids each row holds so far (prompt, then every chosen token; never the pad slots),
    for the repetition penalty. The mask is built at the first step, at the logits' width."""

    def __init__(self, prompts: list[list[int]]):
        self.prompts, self.mask = prompts, None

    def seen(self, vocab: int) -> torch.Tensor:
        if self.mask is None:
            self.mask = seen_ids(self.prompts, vocab)
        return self.mask

    def add(self, chosen_B: torch.Tensor) -> None:
        if self.mask is not None:  # only the rank that chooses keeps one
            self.mask[torch.arange(len(chosen_B)), chosen_B] = True
