"""Worker for the generation tests (tests/distributed/test_generate.py).

    python tests/distributed/generate_worker.py --workdir DIR --phase ref
    torchrun --nproc-per-node 2 tests/distributed/generate_worker.py --workdir DIR --phase layouts

`ref` (one process) builds a tiny random untied model at TP=1, saves it as a
dist checkpoint and records: KV-cached batched greedy, each row alone, the
no-cache recompute (argmax of a full forward per step), seeded sampling twice,
top_p → 0, a stop token, and the logits and KV cache of megatron-core's own
SelfAttention on the same weights (the project's caches rotated keys). `layouts` (2 processes) loads that checkpoint
resharded at TP=2 and at PP=2 and records every rank's greedy and sampled
tokens, then at TP=2 runs greedy generation in a thread on a second copy built
with duplicated process groups while the main thread runs forward/backward on
the training model, recording which groups the generation thread's collectives
used. Results go to DIR/<phase>.json.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import torch
import torch.distributed as dist

from megatron_kanana.mcore import checkpoint, model as mcore_model, runtime
from megatron_kanana.mcore.generate import generate
from megatron_kanana.mcore.sampling import SamplingSettings
from megatron_kanana.models import get_preset
from megatron_kanana.parallel import ParallelConfig

PRESET = "tiny-untied"  # untied + random: greedy output varies (tied tiny models echo their input)
PROMPTS = [[5, 9, 2, 11, 40, 7, 300], [7], [100, 200, 300], [42, 43]]
NEW = 8
CLI_PROMPTS = ["The module", "대한민국은 아름다운"]
SAMPLING = SamplingSettings(temperature=1.0, top_k=50, top_p=0.9, seed=11)
# below 1 the rule favours ids already in the row: a random model's greedy output never
# repeats, so only that direction changes its tokens (the arithmetic is the same either way)
PENALTY = SamplingSettings(repetition_penalty=0.5)


def build(tp: int, pp: int, groups=None):
    shape = get_preset(PRESET)
    parallel = ParallelConfig(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    rt = runtime.initialize(parallel, shape, seed=1234)
    return shape, rt, mcore_model.build_model(shape, mcore_model.transformer_config(shape, parallel, rt.device),
                                              groups=groups)


@torch.no_grad()
def recompute_greedy(model, prompt: list[int], repetition_penalty: float = 1.0) -> list[int]:
    """The spec: no cache, the whole sequence re-run for every token (TP=1, PP=1); with a
    repetition penalty, the logits go through Hugging Face's own processor first."""
    from transformers import RepetitionPenaltyLogitsProcessor

    penalize = RepetitionPenaltyLogitsProcessor(repetition_penalty)
    tokens = list(prompt)
    for _ in range(NEW):
        ids = torch.tensor([tokens])
        logits = model(ids, torch.arange(len(tokens))[None], None)[:, -1].float()
        tokens.append(int(penalize(ids, logits)[0].argmax()))
    return tokens[len(prompt):]


def phase_ref(workdir: Path) -> dict:
    shape, _, chunks = build(1, 1)
    checkpoint.save_model(chunks, workdir / "init")
    model = chunks[0].eval()
    batched = generate(chunks, PROMPTS, NEW)
    stop = batched.tokens[0][2]
    return {"cli": cli_expectations(workdir, shape, chunks), **{
        "greedy": batched.tokens, "lengths": batched.lengths,
        "alone": [generate(chunks, [p], NEW).tokens[0] for p in PROMPTS],
        "recompute": [recompute_greedy(model, p) for p in PROMPTS],
        "sampled": generate(chunks, PROMPTS, NEW, SAMPLING).tokens,
        "sampled_again": generate(chunks, PROMPTS, NEW, SAMPLING).tokens,
        "sampled_other_seed": generate(chunks, PROMPTS, NEW, SamplingSettings(1.0, 0.9, 50, seed=12)).tokens,
        "top_p_tiny": generate(chunks, PROMPTS, NEW, SamplingSettings(temperature=1.0, top_p=1e-9, seed=3)).tokens,
        "penalized": generate(chunks, PROMPTS, NEW, PENALTY).tokens,
        "penalized_recompute": [recompute_greedy(model, p, PENALTY.repetition_penalty) for p in PROMPTS],
        "stop_token": stop,
        "stopped": generate(chunks, PROMPTS, NEW, stop_token=stop).tokens,
        "row_done": generate(chunks, PROMPTS, NEW, row_done=lambda new: stop in new).tokens,
        "against_megatron_attention": against_megatron_attention(shape, chunks),
    }}


def against_megatron_attention(shape, chunks) -> dict:
    """Batched generation on the same weights with megatron-core's stock SelfAttention (keys
    cached before RoPE, the whole cache rotated every step): every step's logits, and what
    each model left in its KV cache."""
    from megatron.core.transformer.attention import SelfAttention

    from megatron_kanana.mcore import generate as generation
    from megatron_kanana.mcore.attention import RotatedKeyCacheAttention

    spec = mcore_model.layer_spec()
    spec.submodules.self_attention.module = SelfAttention
    stock = mcore_model.build_model(shape, chunks[0].config, spec=spec)
    stock[0].load_state_dict(chunks[0].state_dict())
    logits, caches = {}, {}
    made = []

    class Recorded(generation.StaticInferenceContext):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    original, generation.StaticInferenceContext = generation.StaticInferenceContext, Recorded
    try:
        for tag, model in (("kanana", chunks), ("megatron", stock)):
            steps = []
            hook = model[0].output_layer.register_forward_hook(lambda m, i, out: steps.append(out[0].clone()))
            tokens = generate(model, PROMPTS, NEW).tokens
            hook.remove()
            context = made.pop()
            # Only slots [0, sequence_len_offset) were written; the rest is torch.empty garbage.
            written = context.sequence_len_offset
            logits[tag] = (tokens, steps)
            caches[tag] = {n: (k[:written], v[:written]) for n, (k, v) in context.key_value_memory_dict.items()}
    finally:
        generation.StaticInferenceContext = original
    (ours_tokens, ours), (stock_tokens, theirs) = logits["kanana"], logits["megatron"]
    keys_differ = [not torch.equal(caches["kanana"][n][0], caches["megatron"][n][0]) for n in caches["kanana"]]
    values_equal = [caches["kanana"][n][1].numel() > 0 and torch.equal(caches["kanana"][n][1], caches["megatron"][n][1]) for n in caches["kanana"]]
    return {"tokens_equal": ours_tokens == stock_tokens, "steps": [len(ours), len(theirs)],
            "logits_bit_equal": len(ours) == len(theirs) and all(torch.equal(a, b) for a, b in zip(ours, theirs)),
            "keys_differ": keys_differ, "values_equal": values_equal,
            "rotated_key_module": all(isinstance(layer.self_attention, RotatedKeyCacheAttention)
                                      for layer in chunks[0].decoder.layers)}


def cli_expectations(workdir: Path, shape, chunks) -> dict:
    """Make workdir/init a complete checkpoint for `kanana generate` and record, per
    prompt text, the greedy completion generated alone (what the CLI must print)."""
    from megatron_kanana.checkpointing import layout
    from megatron_kanana.data.tokenizer import load_tokenizer
    from tests.unit.data.conftest import build_hf_tokenizer

    tokenizer_path = build_hf_tokenizer(workdir / "tokenizer.json", vocab_size=shape.vocab_size)
    layout.write_meta(workdir / "init", {"contents": ["model"], "model": shape.to_dict(),
                                         "tokenizer": str(tokenizer_path)})
    tokenizer = load_tokenizer(str(tokenizer_path))
    completions = {}
    for text in CLI_PROMPTS:
        ids = generate(chunks, [tokenizer.encode(text)], NEW, stop_token=tokenizer.eod).tokens[0]
        completions[text] = tokenizer.decode([t for t in ids if t != tokenizer.eod])
    return completions


def phase_layouts(workdir: Path) -> dict:
    results = {}
    for tag, (tp, pp) in {"tp2": (2, 1), "pp2": (1, 2)}.items():
        _, _, chunks = build(tp, pp)
        checkpoint.load_model(chunks, workdir / "init")
        mine = {"greedy": generate(chunks, PROMPTS, NEW).tokens,
                "sampled": generate(chunks, PROMPTS, NEW, SAMPLING).tokens,
                "penalized": generate(chunks, PROMPTS, NEW, PENALTY).tokens}
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
        results[tag] = everyone
        runtime.reset_model_parallel()
    results["threaded"] = threaded_beside_training(workdir)
    return results


def threaded_beside_training(workdir: Path) -> dict:
    """TP=2: generation on a duplicate-groups copy in a thread while the training model runs fwd/bwd."""
    shape, _, train_chunks = build(2, 1)
    groups = runtime.duplicate_model_groups()
    copy = mcore_model.build_model(shape, train_chunks[0].config, groups=groups)
    for chunks in (train_chunks, copy):
        checkpoint.load_model(chunks, workdir / "init")
    used = record_groups()
    result, times = {}, {}

    def work():
        used["generation_thread"] = threading.get_ident()
        times["thread"] = [time.perf_counter()]
        result["tokens"] = generate(copy, PROMPTS, NEW, groups=groups).tokens
        times["thread"].append(time.perf_counter())

    data = torch.randint(0, shape.vocab_size, (2, 33), generator=torch.Generator().manual_seed(0))
    thread = threading.Thread(target=work)
    thread.start()
    times["training"] = [time.perf_counter()]
    losses = [train_loss(train_chunks[0], data) for _ in range(6)]  # TP collectives on the training groups
    times["training"].append(time.perf_counter())
    thread.join(timeout=120)
    if thread.is_alive():
        raise RuntimeError("the generation thread did not finish")
    training = {id(g) for g in (runtime.tensor_group(), runtime.pipeline_group())}
    thread_groups = used["calls"].get(used["generation_thread"], set())
    overlap = min(times["thread"][1], times["training"][1]) - max(times["thread"][0], times["training"][0])
    return {"tokens": result["tokens"], "thread_collectives": len(used["count"]), "overlap_s": overlap,
            "losses_beside_generation": losses, "losses_alone": [train_loss(train_chunks[0], data)],
            "thread_used_training_group": bool(thread_groups & training),
            "thread_used_default_group": None in thread_groups,
            "thread_used_duplicate_tp": id(groups.tp) in thread_groups,
            "model_tp_groups_are_duplicates": all(getattr(m, "tp_group", groups.tp) is groups.tp
                                                  for m in copy[0].modules())}


def train_loss(model, data: torch.Tensor) -> float:
    """One forward/backward of the training model (gradients accumulate; weights do not change)."""
    logits = model(data[:, :-1], torch.arange(data.shape[1] - 1)[None], None)
    loss = logits.float().square().mean()
    loss.backward()
    return loss.item()


def record_groups() -> dict:
    """Wrap torch.distributed's collectives to note, per thread, the group each call used."""
    import megatron.core.tensor_parallel.mappings as mappings

    used = {"calls": {}, "count": []}

    def wrap(fn):
        def recorded(*args, group=None, **kwargs):
            used["calls"].setdefault(threading.get_ident(), set()).add(id(group) if group is not None else None)
            if threading.get_ident() == used.get("generation_thread"):
                used["count"].append(fn.__name__)
            return fn(*args, group=group, **kwargs)
        return recorded

    for name in ("all_reduce", "broadcast", "send", "recv", "all_gather_into_tensor", "all_gather",
                 "reduce_scatter_tensor"):
        setattr(dist, name, wrap(getattr(dist, name)))
    if hasattr(mappings, "dist_all_gather_func"):
        mappings.dist_all_gather_func = dist.all_gather_into_tensor
    if hasattr(mappings, "dist_reduce_scatter_func"):
        mappings.dist_reduce_scatter_func = dist.reduce_scatter_tensor
    return used


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", required=True)
    p.add_argument("--phase", choices=("ref", "layouts"), required=True)
    args = p.parse_args()
    workdir = Path(args.workdir)
    result = phase_ref(workdir) if args.phase == "ref" else phase_layouts(workdir)
    if dist.get_rank() == 0:
        (workdir / f"{args.phase}.json").write_text(json.dumps(result))
    runtime.shutdown()


if __name__ == "__main__":
    main()
