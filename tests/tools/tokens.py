"""The fixed token batch that the megatron worker and the HF reference both run."""
import torch

BATCH, SEQ = 2, 16


def tokens_for(vocab: int) -> torch.Tensor:
    """[BATCH, SEQ + 1]: inputs are [:, :-1], labels [:, 1:]."""
    return torch.randint(0, vocab, (BATCH, SEQ + 1), generator=torch.Generator().manual_seed(7))


# the RoPE parity tests (tests/tools/rope_worker.py): three times the scaled variants' original window (16)
ROPE_SEQ = 48
ROPE_PROMPT = list(range(3, 23))
ROPE_NEW_TOKENS = 24  # prompt of 20 + 24 runs past the original window


def rope_tokens(vocab: int, seq: int = ROPE_SEQ) -> torch.Tensor:
    return torch.randint(0, vocab, (2, seq), generator=torch.Generator().manual_seed(7))
