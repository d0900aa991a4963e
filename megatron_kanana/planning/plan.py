"""A plan: one layout's per-GPU memory and step-time estimate, and the best alternatives.

    job = Job.from_config(cfg)
    row = estimate(job, job.layout, GPUS["h100"], num_gpus=256)
    rows = alternatives(job, GPUS["h100"], num_gpus=256)      # fitting layouts, fastest first
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from megatron_kanana.models.shape import ModelShape
from megatron_kanana.planning import memory as mem, timing
from megatron_kanana.planning.hardware import COMPUTE_EFFICIENCY, FP8_SPEEDUP, GPU


@dataclasses.dataclass(frozen=True)
class Layout:
    tp: int = 1
    pp: int = 1
    vpp: int = 1
    sp: bool = False
    cp: int = 1  # context parallelism: each rank holds s/cp of every sequence
    recompute: mem.Recompute = mem.Recompute()

    def label(self) -> str:
        r = self.recompute
        rc = {None: "none", "selective": "selective"}.get(r.granularity, f"full/{r.method}/{r.num_layers}")
        return f"TP{self.tp} PP{self.pp}" + (f" VPP{self.vpp}" if self.vpp > 1 else "") + \
            (f" CP{self.cp}" if self.cp > 1 else "") + (" SP" if self.sp else "") + f" recompute={rc}"

    @property
    def model_parallel(self) -> int:
        return self.tp * self.pp * self.cp


@dataclasses.dataclass(frozen=True)
class Job:
    """What the plan needs from a training config."""

    shape: ModelShape
    seq_length: int
    micro_batch_size: int
    global_batch_size: int
    layout: Layout
    bf16: bool = True
    grad_reduce_in_fp32: bool = True
    distributed_optimizer: bool = True
    overlap_grad_reduce: Optional[bool] = None
    overlap_param_gather: Optional[bool] = None
    fused_lm_head: bool = True
    lm_head_chunk: int = 1024
    fp8: bool = False
    tp_comm_overlap: bool = False
    companion: Optional[ModelShape] = None  # distillation teacher / DPO reference (frozen)
    companion_kind: str = ""

    @classmethod
    def from_config(cls, cfg) -> "Job":
        p, o = cfg.parallel, cfg.optim
        layout = Layout(tp=p.tensor_model_parallel_size, pp=p.pipeline_model_parallel_size,
                        vpp=p.num_model_chunks, sp=p.sequence_parallel, cp=p.context_parallel_size,
                        recompute=mem.Recompute(p.recompute_granularity, p.recompute_method, p.recompute_num_layers))
        companion, kind = companion_shape(cfg)
        return cls(shape=cfg.model, seq_length=longest_seq_length(cfg), micro_batch_size=cfg.data.micro_batch_size,
                   global_batch_size=cfg.data.global_batch_size, layout=layout,
                   bf16=o.bf16 is not False, grad_reduce_in_fp32=o.grad_reduce_in_fp32,
                   distributed_optimizer=o.use_distributed_optimizer, overlap_grad_reduce=o.overlap_grad_reduce,
                   overlap_param_gather=o.overlap_param_gather, fused_lm_head=cfg.kernels.lm_head_loss == "fused",
                   lm_head_chunk=cfg.kernels.lm_head_chunk_size, fp8=p.fp8 is not None,
                   tp_comm_overlap=p.tp_comm_overlap, companion=companion, companion_kind=kind)


def longest_seq_length(cfg) -> int:
    """The longest sequence the run trains at: a mixture stage may set its own (a context
    extension), and memory peaks in the longest stage. A mixture file not there (yet) is the
    pre-flight's to report; the plan then takes data.seq_length."""
    from pathlib import Path

    data = cfg.data
    if not getattr(data, "mixture", None) or not Path(data.mixture).is_file():
        return data.seq_length
    from megatron_kanana.data.mixture import load_mixture
    from megatron_kanana.training.stages import stage_shapes

    shapes = stage_shapes(load_mixture(data.mixture), data.mixture, data, cfg.model)
    return max([data.seq_length] + [s.seq_length for s in shapes.values()])


def companion_shape(cfg) -> tuple[Optional[ModelShape], str]:
    """The frozen model that runs beside the trained one: the distillation teacher (its
    `teacher_model`, else its checkpoint's kanana.json where readable) or the DPO reference
    (the policy's shape)."""
    from megatron_kanana.config.root import resolve_model

    if cfg.distill is not None:
        if cfg.distill.teacher_model is not None:
            return resolve_model(cfg.distill.teacher_model), "teacher"
        return _shape_from_checkpoint(cfg.distill.teacher), "teacher"
    if getattr(cfg, "dpo", None) is not None or getattr(cfg, "online_dpo", None) is not None:
        return cfg.model, "reference"
    return None, ""


def _shape_from_checkpoint(path) -> Optional[ModelShape]:
    import json
    from pathlib import Path

    for candidate in (Path(path) / "kanana.json", Path(path) / "checkpoints" / "latest" / "kanana.json"):
        if candidate.is_file():
            data = json.loads(candidate.read_text())
            return ModelShape.from_dict(data.get("model", data), prefix="teacher")
    return None


@dataclasses.dataclass
class Row:
    layout: Layout
    num_gpus: int
    dp: int
    memory: dict            # term -> bytes on the busiest GPU
    fits: bool
    step: timing.StepTime
    tokens_per_s_per_gpu: float
    mfu: float

    @property
    def total_memory(self) -> float:
        return sum(self.memory.values())

    def to_dict(self) -> dict:
        return {"layout": self.layout.label(), "tp": self.layout.tp, "pp": self.layout.pp, "vpp": self.layout.vpp,
                "cp": self.layout.cp,
                "sequence_parallel": self.layout.sp, "recompute": dataclasses.asdict(self.layout.recompute),
                "num_gpus": self.num_gpus, "dp": self.dp,
                "memory_bytes": {k: int(v) for k, v in self.memory.items()}, "memory_total_bytes": int(self.total_memory),
                "fits": self.fits, "step_seconds": self.step.total,
                "step_breakdown_seconds": dataclasses.asdict(self.step),
                "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu, "mfu": self.mfu}


def memory_terms(job: Job, layout: Layout, dp: int) -> dict:
    # a CP rank holds s/cp of each sequence; the distributed optimizer shards over DP × CP
    shape, s, b = job.shape, job.seq_length // layout.cp, job.micro_batch_size
    params = mem.stage_parameters(shape, layout.tp, layout.pp)
    terms = mem.model_state_bytes(params, dp * layout.cp, job.bf16, job.grad_reduce_in_fp32,
                                  job.distributed_optimizer)
    micro_batches = job.global_batch_size // (dp * b)
    # 1F1B: the first stage holds PP micro-batches; interleaving adds (p-1)/(p·v) (Korthikanti §4.2.3)
    in_flight = min(layout.pp, micro_batches) * (1 + (layout.pp - 1) / (layout.pp * layout.vpp)
                                                 if layout.vpp > 1 else 1)
    dtype_bytes = 2 if job.bf16 else 4
    head = mem.LossHead(shape.vocab_size, job.fused_lm_head, job.lm_head_chunk)
    # interleaving leaves the last stage several micro-batches in flight too; 1F1B leaves it one
    head_in_flight = in_flight if layout.vpp > 1 else 1
    terms.update(mem.peak_activation_bytes(mem.LayerShape.of(shape), shape.num_layers // layout.pp, s, b, layout.tp,
                                           layout.sp, layout.recompute, in_flight, head, dtype_bytes, head_in_flight))
    if job.companion is not None:
        terms[job.companion_kind] = 2 * mem.stage_parameters(job.companion, layout.tp, layout.pp) + \
            mem.logits_bytes(s, b, job.companion.vocab_size, layout.tp, job.fused_lm_head, job.lm_head_chunk)
    return terms


def step_time(job: Job, layout: Layout, gpu: GPU, dp: int, efficiency: float) -> timing.StepTime:
    shape, s_full, b = job.shape, job.seq_length, job.micro_batch_size
    tp, pp, cp = layout.tp, layout.pp, layout.cp
    s = s_full // cp  # tokens per rank; attention still spans the whole sequence
    micro_batches = job.global_batch_size // (dp * b)
    flops = shape.flops_per_token(s_full) * s * b / (tp * pp)
    r = layout.recompute.granularity
    if r == "full":
        flops *= 4 / 3  # one more forward of the layers
    if job.companion is not None:
        flops += job.companion.flops_per_token(s_full) * s * b / (tp * pp) / 3  # its forward only
    rate = gpu.bf16_flops * efficiency * (FP8_SPEEDUP if job.fp8 else 1)
    t_micro = flops / rate
    within_node = tp * pp * cp * dp <= gpu.gpus_per_node
    tp_bw = gpu.nvlink_bw
    tp_comm = micro_batches * shape.num_layers / pp * timing.tp_bytes_per_layer(s, b, shape.hidden_size, tp,
                                                                               r == "full") / tp_bw
    if job.tp_comm_overlap:
        tp_comm *= 0.2  # TE userbuffers hide most of it behind the GEMMs
    pp_bw = gpu.nvlink_bw if tp * pp * cp <= gpu.gpus_per_node else gpu.ib_bw
    boundary = 2 * s * b * shape.hidden_size / (tp if layout.sp else 1)
    pp_comm = 0.0 if pp == 1 else micro_batches * layout.vpp * 2 * boundary / pp_bw * 0.25  # mostly async
    dp_bw = gpu.nvlink_bw if within_node else gpu.ib_bw
    params = mem.stage_parameters(shape, tp, pp)
    grad_bytes = params * (4 if job.grad_reduce_in_fp32 or not job.bf16 else 2)
    overlap_grad = dp > 1 if job.overlap_grad_reduce is None else job.overlap_grad_reduce
    overlap_param = (dp > 1 and job.distributed_optimizer) if job.overlap_param_gather is None \
        else job.overlap_param_gather
    dcp = dp * cp  # gradients reduce, and the optimizer shards, over DP × CP
    if job.distributed_optimizer:
        grad_comm = timing.ring(dcp, grad_bytes, "reduce_scatter") / dp_bw
        param_comm = timing.ring(dcp, params * 2, "all_gather") / dp_bw
    else:
        grad_comm, param_comm = timing.ring(dcp, grad_bytes, "all_reduce") / dp_bw, 0.0
    window = t_micro * layout.vpp  # every chunk's last backward / first forward is a window
    optimizer_bytes = 16 * params / (dcp if job.distributed_optimizer else 1) * 2  # read + write master/m/v/grad
    # TE's ring attention overlaps each K/V hop with the attention block of the chunk in hand
    cp_bw = gpu.nvlink_bw if tp * cp <= gpu.gpus_per_node else gpu.ib_bw
    cp_comm = micro_batches * shape.num_layers / pp * timing.cp_bytes_per_layer(
        s_full, b, shape.num_query_groups * shape.kv_channels // tp, cp) / cp_bw
    attention_flops = 6 * shape.num_layers / pp * s_full * shape.num_attention_heads * shape.kv_channels * s * b / tp
    attention_window = micro_batches * attention_flops / rate
    return timing.StepTime(
        compute=micro_batches * t_micro,
        bubble=timing.pipeline_bubble(pp, layout.vpp, micro_batches, t_micro),
        tp_comm=tp_comm, pp_comm=pp_comm,
        dp_grad_comm=timing.exposed(grad_comm, window * 2 / 3, overlap_grad),
        dp_param_comm=timing.exposed(param_comm, window / 3, overlap_param),
        optimizer=optimizer_bytes / gpu.hbm_bw,
        cp_comm=timing.exposed(cp_comm, attention_window, True))


def estimate(job: Job, layout: Layout, gpu: GPU, num_gpus: int, efficiency: float = COMPUTE_EFFICIENCY) -> Row:
    dp = num_gpus // layout.model_parallel
    terms = memory_terms(job, layout, dp)
    step = step_time(job, layout, gpu, dp, efficiency)
    tokens = job.global_batch_size * job.seq_length / step.total / num_gpus
    mfu = tokens * job.shape.flops_per_token(job.seq_length) / gpu.bf16_flops
    return Row(layout=layout, num_gpus=num_gpus, dp=dp, memory=terms, fits=sum(terms.values()) <= gpu.usable_memory,
               step=step, tokens_per_s_per_gpu=tokens, mfu=mfu)


def layout_problem(job: Job, layout: Layout, num_gpus: int) -> Optional[str]:
    """Why this layout cannot run this job at this GPU count (None: it can)."""
    shape = job.shape
    if num_gpus % layout.model_parallel:
        return f"{num_gpus} GPUs do not split into TP {layout.tp} × PP {layout.pp} × CP {layout.cp}"
    if job.seq_length % (2 * layout.cp):
        return f"seq_length {job.seq_length} is not divisible by 2 × CP {layout.cp} (load-balanced chunks)"
    for name, value in (("num_attention_heads", shape.num_attention_heads), ("num_query_groups", shape.num_query_groups),
                        ("ffn_hidden_size", shape.ffn_hidden_size), ("vocab_size", shape.vocab_size)):
        if value % layout.tp:
            return f"{name} ({value}) is not divisible by TP {layout.tp}"
    if shape.num_layers % (layout.pp * layout.vpp):
        return f"num_layers ({shape.num_layers}) is not divisible by PP × VPP"
    dp = num_gpus // layout.model_parallel
    if job.global_batch_size % (dp * job.micro_batch_size):
        return f"global batch {job.global_batch_size} does not split over DP {dp} × micro-batch {job.micro_batch_size}"
    return None


def candidate_layouts(job: Job, num_gpus: int):
    recomputes = (mem.Recompute(), mem.Recompute("selective"), mem.Recompute("full", "uniform", 1))
    for tp in (1, 2, 4, 8):
        for pp in (1, 2, 4, 8, 16):
            for vpp in sorted({1, job.layout.vpp}):
                for recompute in recomputes:
                    layout = Layout(tp=tp, pp=pp, vpp=vpp if pp > 1 else 1, sp=tp > 1, cp=job.layout.cp,
                                    recompute=recompute)  # CP is the user's choice for the length
                    if layout_problem(job, layout, num_gpus) is None:
                        yield layout


def alternatives(job: Job, gpu: GPU, num_gpus: int, efficiency: float = COMPUTE_EFFICIENCY,
                 top: int = 5) -> list[Row]:
    rows = {layout: estimate(job, layout, gpu, num_gpus, efficiency) for layout in candidate_layouts(job, num_gpus)}
    fitting = sorted((r for r in rows.values() if r.fits and r.layout != job.layout), key=lambda r: -r.tokens_per_s_per_gpu)
    return fitting[:top]
