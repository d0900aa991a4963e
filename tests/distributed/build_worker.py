"""Build each preset on megatron-core and count its parameters, summed over
tensor-parallel ranks (replicated norms counted once). Writes JSON to --out."""
import argparse
import json

import torch
import torch.distributed as dist

from megatron_kanana.mcore import model as mcore_model, runtime
from megatron_kanana.models import get_preset
from megatron_kanana.parallel import ParallelConfig


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--presets", required=True)
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    parallel = ParallelConfig(tensor_model_parallel_size=args.tp)
    results = {}
    for i, name in enumerate(args.presets.split(",")):
        shape = get_preset(name)
        if i == 0:
            rt = runtime.initialize(parallel, shape, seed=0)
        chunks = mcore_model.build_model(shape, mcore_model.transformer_config(shape, parallel, rt.device))
        total = 0
        for p_ in chunks[0].parameters():
            split = getattr(p_, "tensor_model_parallel", False)
            total += p_.numel() if (split or runtime.tensor_rank() == 0) else 0
        count = torch.tensor([total])
        dist.all_reduce(count)
        results[name] = {"built": int(count.item()), "formula": shape.parameters}
    if dist.get_rank() == 0:
        with open(args.out, "w") as f:
            json.dump(results, f)
    runtime.shutdown()


if __name__ == "__main__":
    main()
