# The training image: NVIDIA's PyTorch container with megatron_kanana installed.
#   docker build -t megatron-kanana:0.1.0 .
#   docker run --gpus all --rm megatron-kanana:0.1.0 model-info kanana-8b
#   enroot import -o megatron-kanana.sqsh dockerd://megatron-kanana:0.1.0
#   CONTAINER_IMAGE=$PWD/megatron-kanana.sqsh sbatch examples/pretrain_8b_stage1.sh
# The repo lives at /workspace/megatron_kanana (examples/slurm_common.sh's CONTAINER_REPO);
# pyxis does not run the ENTRYPOINT unless asked, so the SLURM scripts call python directly.
#
# 26.09 is the newest NVIDIA PyTorch release seen in public use here (Python 3.12, an NVIDIA
# torch 2.14 pre-release for CUDA 13.4), with Transformer Engine, apex and flash-attn built
# against its torch. That torch is never replaced: NVIDIA's torch builds are pre-releases that
# pip does not count as satisfying megatron-core's `torch>=2.6.0`, so megatron-core goes in with
# --no-deps; its other requirements, numpy and packaging, come with the image. megatron-core is
# the newest release the code supports (0.19.2, as in requirements/py312.txt; 0.17+ needs
# Python 3.12). Not built or run here (no Docker, no GPU on the dev box).
FROM nvcr.io/nvidia/pytorch:26.09-py3

WORKDIR /workspace/megatron_kanana

# The image's torch, so the build fails below if any install replaced it.
RUN python -c "import torch; print(torch.__version__)" > /tmp/image_torch_version

# Runtime dependencies the image lacks, in a layer that survives code edits. The image's
# PIP_CONSTRAINT file holds the versions of what NVIDIA ships (pyyaml, psutil, tensorboard,
# matplotlib, sentencepiece, numpy, ...), so those stay unpinned here; the others carry the
# versions of requirements/cpu.txt. Never torch.
RUN pip install --no-cache-dir --no-deps megatron-core==0.19.2 && \
    pip install --no-cache-dir \
        tokenizers==0.23.3 safetensors==0.8.0 zstandard==0.25.0 wandb==0.31.0 py3langid==0.4.0 \
        sentencepiece pyyaml psutil tensorboard matplotlib

COPY . .
RUN pip install --no-cache-dir --no-deps -e . && \
    test "$(python -c 'import torch; print(torch.__version__)')" = "$(cat /tmp/image_torch_version)" && \
    python -c "import megatron.core, megatron_kanana.cli, megatron_kanana.mcore.model, kanana_kernels" && \
    kanana --help

# Megatron's tensor/sequence-parallel overlap needs kernels to run in launch order.
ENV CUDA_DEVICE_MAX_CONNECTIONS=1 \
    PYTHONUNBUFFERED=1

ENTRYPOINT ["kanana"]
CMD ["--help"]
