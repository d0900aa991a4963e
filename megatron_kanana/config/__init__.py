"""The sectioned config: each component defines and validates its own section;
`root.py` assembles them and runs the one cross-section check."""
from megatron_kanana.config.section import ConfigError, Section

__all__ = ["ConfigError", "Section"]
