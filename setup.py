"""Install megatron_kanana and its kernels package.

The CPU development set is pinned in requirements/cpu.txt and installed by the
Makefile; install_requires stays loose so the package installs unchanged into
an NVIDIA PyTorch container whose torch, Transformer Engine, apex and
flash-attn come with the image.
"""
from setuptools import find_packages, setup

setup(
    name="megatron-kanana",
    version="0.1.0",
    description="Kanana's compute-efficient training recipe on NVIDIA megatron-core",
    python_requires=">=3.11",
    packages=find_packages(include=["megatron_kanana", "megatron_kanana.*"])
    + find_packages(where="kernels", include=["kanana_kernels", "kanana_kernels.*"]),
    package_dir={"kanana_kernels": "kernels/kanana_kernels"},
    include_package_data=True,
    package_data={"megatron_kanana": ["data/corpus/**/*", "**/*.yaml", "evaluation/local_tasks/**/*"]},
    install_requires=[
        "torch>=2.4",
        # tested at both ends: 0.16.1 (Python 3.11) and 0.19.2 (Python 3.12); mcore/compat.py
        "megatron-core>=0.16.1,<0.20",
        "numpy",
        "pyyaml",
        "safetensors",
        "sentencepiece",
        "tokenizers",
        "tiktoken",
        "psutil",
    ],
    extras_require={
        # Optional GPU extras, imported only when present.
        "gpu": ["transformer-engine[pytorch]", "flash-attn"],
        "logging": ["wandb", "tensorboard", "matplotlib"],
        "hf": ["transformers"],
        # `kanana eval` (and its --hf comparison, which needs accelerate)
        "eval": ["lm-eval==0.4.13", "accelerate", "transformers"],
    },
    entry_points={"console_scripts": ["kanana=megatron_kanana.cli:main"]},
)
