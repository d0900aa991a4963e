"""Before a job: per-GPU memory and step time of a config at a GPU count (`kanana plan`).

Pure functions of the model shape, the layout and the hardware (planning/hardware.py);
nothing here imports megatron-core or touches a GPU, so it runs on a login node.
"""
