"""Greedy decoding on a megatron-core GPTModel (no pipeline parallelism, no KV cache).

Each new token re-runs the whole prefix: fine for demos and tests on small
models; the post-training work brings KV-cached generation at TP and PP.
Vocab-parallel logits are gathered across TP ranks only for the last position.
"""
from __future__ import annotations

import torch
from megatron.core import parallel_state
from megatron.core.tensor_parallel.mappings import gather_from_tensor_model_parallel_region


@torch.no_grad()
def greedy_generate(chunks: list[torch.nn.Module], prompt: list[int], max_new_tokens: int,
                    stop_token: int | None = None, max_length: int | None = None) -> list[int]:
    if parallel_state.get_pipeline_model_parallel_world_size() != 1 or len(chunks) != 1:
        raise NotImplementedError("greedy_generate runs without pipeline parallelism (PP=1)")
    if not prompt:
        raise ValueError("greedy_generate: empty prompt")
    model = getattr(chunks[0], "module", chunks[0])
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    tokens = list(prompt)
    for _ in range(max_new_tokens):
        window = tokens[-max_length:] if max_length else tokens
        ids = torch.tensor([window], dtype=torch.long, device=device)
        positions = torch.arange(len(window), device=device).unsqueeze(0)
        logits = model(ids, positions, None)[:, -1:, :]  # [1, 1, V/tp]
        full = gather_from_tensor_model_parallel_region(logits.float())
        next_token = int(full[0, -1].argmax())
        tokens.append(next_token)
        if stop_token is not None and next_token == stop_token:
            break
    model.train(was_training)
    return tokens[len(prompt):]
