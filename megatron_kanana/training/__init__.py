"""How a model is trained: the LR schedule, the NaN/inf policy, metrics and plots.

Nothing here imports megatron.core; the trainer that drives megatron-core calls
these pieces with plain numbers.
"""
