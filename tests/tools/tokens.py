"""The fixed token batch that the megatron worker and the HF reference both run."""
import torch

BATCH, SEQ = 2, 16


def tokens_for(vocab: int) -> torch.Tensor:
    """[BATCH, SEQ + 1]: inputs are [:, :-1], labels [:, 1:]."""
    return torch.randint(0, vocab, (BATCH, SEQ + 1), generator=torch.Generator().manual_seed(7))
