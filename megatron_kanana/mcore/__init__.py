"""The engine boundary: the only package that imports megatron.core.

Everything megatron-specific — TransformerConfig, layer specs, GPTModel,
process groups, DDP and the distributed optimizer, pipeline schedules,
dist_checkpointing, indexed datasets — is reached through these modules, so
the rest of megatron_kanana speaks in its own config sections.
"""

import warnings as _warnings

# On CPU (and in containers without apex) megatron warns once per module that it
# falls back to torch implementations; that is the expected path here, not news.
for _pattern in ("Transformer Engine and Apex are not installed", "Apex is not installed",
                 "full scope is deprecated", "deprecating ShardedTensor", "`load_state_dict` is deprecated",
                 "CUDA_DEVICE_MAX_CONNECTIONS"):
    _warnings.filterwarnings("ignore", message=f".*{_pattern}.*")

# An unsupported megatron-core fails here (compat checks the version on import), naming
# both versions, before any megatron module loads.
from megatron_kanana.mcore import compat as _compat  # noqa: E402,F401
