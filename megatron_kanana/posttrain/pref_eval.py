"""`kanana pref-eval`: how often a policy prefers the chosen response more than a reference does.

    kanana pref-eval --policy runs/dpo/checkpoints --reference runs/sft/checkpoints --pairs data/prefs_valid

For each held-out preference pair, with π and ref the summed response log-probs
under the policy and the reference, the implicit DPO reward margin is
(π_c − ref_c) − (π_r − ref_r); "preference accuracy" is the fraction of pairs
where it is positive (a tie — e.g. the reference against itself — is not a win).
This is the number DPO raises; it is what `kanana train` logs on held-out pairs
during DPO, here for any two checkpoints with one tokenizer. Both models are
loaded at TP=1/PP=1 in this process whatever layout they were trained at.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True, help="policy checkpoint (run checkpoints dir or iter_*)")
    parser.add_argument("--reference", required=True, help="reference checkpoint (e.g. the SFT model)")
    parser.add_argument("--pairs", required=True, nargs="+", help="preference dataset prefixes (kanana pref-preprocess)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per forward pass")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def evaluate(policy: str | Path, reference: str | Path, prefixes: list[str], batch_size: int = 8) -> dict:
    import torch

    from megatron_kanana.checkpointing import layout
    from megatron_kanana.data.tokenizer import load_tokenizer
    from megatron_kanana.mcore import distill as mcore_distill, runtime
    from megatron_kanana.mcore.loss import vocab_parallel_sequence_logprobs
    from megatron_kanana.models.shape import ModelShape
    from megatron_kanana.parallel.config import ParallelConfig
    from megatron_kanana.posttrain.dpo import check_reference_tokenizer
    from megatron_kanana.posttrain.preference import collate_pairs, open_pair_datasets
    from megatron_kanana.posttrain.sft_dataset import read_meta

    dirs = {name: layout.resolve(Path(path)) for name, path in (("policy", policy), ("reference", reference))}
    metas = {name: layout.read_meta(d) for name, d in dirs.items()}
    for name in dirs:
        layout.check_model_kind(metas[name], dirs[name], ("lm",), f"pref-eval --{name}")
    policy_tokenizer = layout.recorded_tokenizer(metas["policy"], dirs["policy"])  # never against the cwd
    check_reference_tokenizer(metas["reference"], dirs["reference"], policy_tokenizer)
    shapes = {name: ModelShape.from_dict(m["model"], prefix=f"{name} model") for name, m in metas.items()}
    fingerprint = load_tokenizer(policy_tokenizer).fingerprint
    seq_length = max(read_meta(prefix, "pref")["seq_length"] for prefix in prefixes)
    pairs = open_pair_datasets("pref-eval", prefixes, seq_length, fingerprint)
    parallel = ParallelConfig()
    rt = runtime.initialize(parallel, shapes["policy"], seed=0)
    try:
        models = {name: mcore_distill.build_teacher(shapes[name], parallel, rt.device, dirs[name],
                                                    seq_length=seq_length)[0] for name in dirs}
        margins = []
        with torch.no_grad():
            for start in range(0, len(pairs), batch_size):
                batch = collate_pairs([pairs[i] for i in range(start, min(start + batch_size, len(pairs)))])
                logps = {}
                for name, model in models.items():
                    logits = model(batch["tokens"].to(rt.device), batch["position_ids"].to(rt.device), None)
                    logps[name] = vocab_parallel_sequence_logprobs(logits, batch["labels"].to(rt.device),
                                                                   batch["loss_mask"].to(rt.device)).cpu()
                delta = logps["policy"] - logps["reference"]
                margins += (delta[0::2] - delta[1::2]).tolist()
    finally:
        runtime.shutdown()
    return {"pairs": len(margins), "preference_accuracy": sum(m > 0 for m in margins) / len(margins),
            "mean_margin": sum(margins) / len(margins), "policy": str(dirs["policy"]),
            "reference": str(dirs["reference"])}


def run(args: argparse.Namespace) -> int:
    from megatron_kanana.checkpointing.layout import CheckpointError
    from megatron_kanana.config.section import ConfigError
    from megatron_kanana.posttrain.sft_dataset import SFTDatasetError

    if args.batch_size < 1:
        print("kanana pref-eval: error: --batch-size must be >= 1")
        return 2
    try:
        result = evaluate(args.policy, args.reference, args.pairs, args.batch_size)
    except (CheckpointError, ConfigError, SFTDatasetError) as e:
        print(f"kanana pref-eval: error: {e}")
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['pairs']} pairs: preference accuracy {result['preference_accuracy']:.3f}, "
              f"mean log-ratio margin {result['mean_margin']:.3f} ({result['policy']} vs {result['reference']})")
    return 0
