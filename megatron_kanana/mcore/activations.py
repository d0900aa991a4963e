"""Forward hooks on megatron-core's GPTModel that collect pruning importance statistics.

    recorder = ActivationRecorder(chunks, shape, Aggregation())
    ... run megatron's forward-only schedule over calibration batches ...
    stats = recorder.reduce()        # every rank: statistics of the whole model over all samples
    recorder.remove()

What is hooked (per layer; the global layer index is megatron's `layer_number - 1`):
- the RMSNorm outputs feeding attention and the MLP, and the final norm: hidden
  channels. Local spec: the norm modules' outputs. Transformer Engine fuses the
  norm into linear_qkv / linear_fc1, so there the norm is recomputed from the
  fused linear's input and `layer_norm_weight`.
- the input of linear_proj (the core attention output): this rank's query heads;
- the input of linear_fc2 (act(gate)·up), or the output of linear_fc1 (gate, up):
  this rank's FFN neurons;
- the layer's input and output: block importance.
Each rank fills its part of full-size float64 buffers (its layers, its TP slice
of heads/neurons; TP-replicated statistics from TP rank 0 only), so one SUM
all-reduce over the world gathers TP slices and PP stages and adds DP samples.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from megatron.core import parallel_state

from megatron_kanana.models.shape import ModelShape
from megatron_kanana.surgery import importance as imp


def _unwrap(chunk: torch.nn.Module) -> torch.nn.Module:
    return getattr(chunk, "module", chunk)


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight.float()


class ActivationRecorder:
    def __init__(self, chunks: list[torch.nn.Module], shape: ModelShape, aggregation: imp.Aggregation):
        if parallel_state.get_context_parallel_world_size() > 1:
            raise ValueError("importance scoring splits no sequences: run it with context_parallel_size 1")
        self.shape, self.agg = shape, aggregation
        self.tp_rank = parallel_state.get_tensor_model_parallel_rank()
        self.tp_size = parallel_state.get_tensor_model_parallel_world_size()
        n, h = shape.num_layers, shape.hidden_size
        f64 = dict(dtype=torch.float64)
        # norm index: 2l = before attention of layer l, 2l + 1 = before its MLP, 2n = final norm
        self.hidden = torch.zeros(2 * n + 1, h, **f64)
        self.heads = torch.zeros(n, shape.num_attention_heads, **f64)
        self.ffn = torch.zeros(n, shape.ffn_hidden_size, **f64)
        self.block = torch.zeros(n, 2, **f64)  # (sum of 1 - cos, tokens)
        self.samples = torch.zeros(1, **f64)   # counted at the final norm, TP rank 0
        self._handles = []
        for chunk in chunks:
            self._hook_model(_unwrap(chunk))

    # -- registration ---------------------------------------------------------------------
    def _hook_model(self, model: torch.nn.Module) -> None:
        decoder = model.decoder
        for layer in decoder.layers:
            self._hook_layer(layer, layer.layer_number - 1)
        if getattr(decoder, "final_layernorm", None) is not None:
            self._on(decoder.final_layernorm, "forward", lambda out, i=2 * self.shape.num_layers: self._norm(i, out))

    def _hook_layer(self, layer: torch.nn.Module, index: int) -> None:
        attn, mlp = layer.self_attention, layer.mlp
        for norm_index, norm, fused in ((2 * index, layer.input_layernorm, attn.linear_qkv),
                                        (2 * index + 1, layer.pre_mlp_layernorm, mlp.linear_fc1)):
            if hasattr(fused, "layer_norm_weight"):  # TE: the norm lives inside the linear
                eps = self.shape.norm_epsilon
                self._on(fused, "pre", lambda x, i=norm_index, m=fused, e=eps:
                         self._norm(i, _rms_norm(x, m.layer_norm_weight, e)))
            else:
                self._on(norm, "forward", lambda out, i=norm_index: self._norm(i, out))
        self._on(attn.linear_proj, "pre", lambda x, i=index: self._head(i, x))
        if self.agg.ffn_state == "intermediate":
            self._on(mlp.linear_fc2, "pre", lambda x, i=index: self._neuron(i, imp.channel_magnitude(x)))
        else:
            self._on(mlp.linear_fc1, "forward", lambda out, i=index: self._neuron(i, imp.gate_up_magnitude(out)))
        handle = layer.register_forward_hook(
            lambda mod, args, kwargs, out, i=index: self._block(i, kwargs.get("hidden_states", args[0] if args else None),
                                                                _first(out)), with_kwargs=True)
        self._handles.append(handle)

    def _on(self, module: torch.nn.Module, when: str, fn) -> None:
        """Call fn(input) before `module` runs ("pre"), or fn(output) after it ("forward")."""
        def pre_hook(mod, args):
            fn(args[0])

        def forward_hook(mod, args, out):
            fn(_first(out))

        if when == "pre":
            self._handles.append(module.register_forward_pre_hook(pre_hook))
        else:
            self._handles.append(module.register_forward_hook(forward_hook))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # -- accumulation ------------------------------------------------------------------------
    def _add(self, magnitude_SBN: torch.Tensor) -> torch.Tensor:
        stat = imp.batch_statistic(imp.per_sample(magnitude_SBN, self.agg.sequence), self.agg.batch)
        return stat.detach().cpu()

    def _norm(self, index: int, out: torch.Tensor) -> None:
        if self.tp_rank == 0:  # identical on every TP rank
            self.hidden[index] += self._add(imp.channel_magnitude(out.detach()))
            if index == 2 * self.shape.num_layers:  # the final norm sees each sample once
                self.samples += out.shape[1]

    def _head(self, layer: int, x: torch.Tensor) -> None:
        local = self.shape.num_attention_heads // self.tp_size
        self.heads[layer, self.tp_rank * local:(self.tp_rank + 1) * local] += \
            self._add(imp.head_magnitude(x.detach(), self.shape.kv_channels))

    def _neuron(self, layer: int, magnitude: torch.Tensor) -> None:
        local = self.shape.ffn_hidden_size // self.tp_size
        self.ffn[layer, self.tp_rank * local:(self.tp_rank + 1) * local] += self._add(magnitude.detach())

    def _block(self, layer: int, x_in: torch.Tensor, x_out: torch.Tensor) -> None:
        if self.tp_rank == 0 and x_in is not None:
            total, tokens = imp.block_importance_sum(x_in.detach(), x_out.detach())
            self.block[layer] += torch.tensor([total, tokens], dtype=torch.float64)

    # -- gathering -----------------------------------------------------------------------------
    def reduce(self) -> dict[str, torch.Tensor]:
        """Sum every rank's part (a collective: call on all ranks). Every rank gets the totals."""
        flat = torch.cat([self.hidden.flatten(), self.heads.flatten(), self.ffn.flatten(),
                          self.block.flatten(), self.samples])
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
        flat = flat.to(device) if device is not None else flat
        dist.all_reduce(flat)
        flat = flat.cpu()
        sizes = [self.hidden.numel(), self.heads.numel(), self.ffn.numel(), self.block.numel(), 1]
        hidden, heads, ffn, block, samples = flat.split(sizes)
        return {"hidden": hidden.reshape(self.hidden.shape), "heads": heads.reshape(self.heads.shape),
                "ffn": ffn.reshape(self.ffn.shape), "block": block.reshape(self.block.shape),
                "samples": samples}
