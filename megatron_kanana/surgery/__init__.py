"""Checkpoint surgery: pure functions over state dicts and layer-index maps
(HF <-> megatron mapping, depth up-scaling), and the thin CLIs over them."""
