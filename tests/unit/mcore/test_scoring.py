"""Evaluation of the live model leaves training's random streams where they were: whatever
lm-eval seeds or draws inside `preserved_rng`, the next draws are those of a run without it."""
import random

import numpy as np
import torch

from megatron_kanana.mcore.scoring import preserved_rng


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_preserved_rng_restores_python_numpy_and_torch():
    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    expected = _draws()
    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    with preserved_rng():
        torch.manual_seed(1234), random.seed(1234), np.random.seed(1234)  # what lm-eval does
        _draws()
    assert _draws() == expected
