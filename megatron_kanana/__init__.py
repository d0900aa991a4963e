"""megatron_kanana: Kanana's compute-efficient recipe on NVIDIA megatron-core.

Layout: `models/` (what), `parallel/` (where), `mcore/` (the only importer of
megatron.core), `config/` (the sectioned config), and the entry point `cli.py`.
"""

__version__ = "0.1.0"
