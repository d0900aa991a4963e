"""The training loop: stages of a mixture on megatron-core, with exact resume.

    trainer = build_trainer(config); trainer.train(); trainer.close()

Per step: LR from the stage plan → this rank's micro-batches → megatron's
schedule (forward/backward, gradient reduction) → NaN guard → optimizer step →
metrics → maybe validate / benchmark (an `evaluation` section) / save / stop.
The data position and the LR are pure functions of the global step, so a resumed
run repeats nothing and skips nothing. A stage may run at its own sequence length and
RoPE (training/stages.py): entering it switches the model's rotary embedding in place
(weights and optimizer state carry over) and its datasets are built at its length; a
checkpoint's `model` is the shape its last step trained under. What is trained — the
forward step, its losses, the datasets, frozen companion models — is the objective's
(training/objectives/); the loop never asks.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch

from megatron_kanana.config.root import TrainConfig
from megatron_kanana.log import get_logger
from megatron_kanana.mcore import model as mcore_model, rope as mcore_rope, runtime, step as mcore_step
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.training.checkpointer import Checkpointer
from megatron_kanana.training.metrics import MetricsLogger
from megatron_kanana.training.nan_guard import NanGuard, TrainingDiverged
from megatron_kanana.training.objectives import Objective, build_objective
from megatron_kanana.training.stages import Stage, StagePlan

log = get_logger(__name__)


def build_trainer(cfg: TrainConfig, env=None) -> "Trainer":
    """runtime → objective → model → optimizer → companions → trainer, in the order that fixes
    the RNG streams (a refactor that reorders these changes the initial weights).
    `env`: the launch environment (parallel/launch_env.py; default: detected)."""
    from megatron_kanana.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(cfg.data.tokenizer)
    cfg.check(tokenizer.vocab_size)
    objective = build_objective(cfg)
    plan = objective.stage_plan()
    rt = runtime.initialize(cfg.parallel, cfg.model, seed=cfg.run.seed, env=env)
    cfg.data.accumulation_steps(rt.layout.data)  # the global batch must split over DP ranks
    Path(cfg.run.output_dir).mkdir(parents=True, exist_ok=True)
    chunks = build_model(cfg, rt, objective, plan.stages[plan.start_index])
    optimizer = build_optimizer(cfg, chunks)
    objective.attach(rt, chunks, tokenizer)
    return Trainer(cfg, rt, chunks, optimizer, objective, plan, tokenizer)


def stage_shape(cfg: TrainConfig, stage: Stage) -> tuple[int, ModelShape]:
    """(sequence length, model shape) a stage trains at; a stage that sets neither runs at the config's."""
    return stage.seq_length or cfg.data.seq_length, stage.model or cfg.model


def build_model(cfg: TrainConfig, rt, objective: Objective, stage: Stage) -> list:
    """This rank's model chunks (with the RoPE of the stage the run starts in), changed by the
    objective, wrapped in megatron's DDP."""
    seq_length, shape = stage_shape(cfg, stage)
    tconfig = mcore_model.transformer_config(shape, cfg.parallel, rt.device, bf16=cfg.optim.bf16)
    chunks = mcore_model.build_model(shape, tconfig, max_sequence_length=seq_length,
                                     kernels=objective.model_kernels())
    objective.prepare_model(chunks)
    optim = cfg.optim
    overlap_grad, overlap_param = optim.resolved_overlap(rt.layout.data, rt.device)
    return mcore_step.wrap_ddp(chunks, mcore_step.DDPSettings(
        use_distributed_optimizer=optim.use_distributed_optimizer, overlap_grad_reduce=overlap_grad,
        overlap_param_gather=overlap_param, align_param_gather=optim.align_param_gather,
        bucket_size=optim.bucket_size, grad_reduce_in_fp32=optim.grad_reduce_in_fp32))


def build_optimizer(cfg: TrainConfig, chunks: list):
    peak_lr = cfg.schedule.lr
    return mcore_step.build_optimizer(chunks, mcore_step.OptimizerSettings(
        lr=peak_lr, weight_decay=cfg.optim.decay_for(peak_lr), adam_beta1=cfg.optim.adam_beta1,
        adam_beta2=cfg.optim.adam_beta2, adam_eps=cfg.optim.adam_eps, clip_grad=cfg.optim.clip_grad,
        use_distributed_optimizer=cfg.optim.use_distributed_optimizer))


def build_evaluation(cfg: TrainConfig, chunks: list, tokenizer):
    """The benchmarks run inside the job (an `evaluation` section), or None."""
    if cfg.evaluation is None:
        return None
    from megatron_kanana.evaluation.in_training import InTrainingEvaluation

    return InTrainingEvaluation(cfg.evaluation, chunks, tokenizer,
                                max_length=cfg.evaluation.max_length or cfg.model.max_position_embeddings)


class Trainer:
    def __init__(self, cfg: TrainConfig, rt, chunks: list, optimizer, objective: Objective, plan: StagePlan,
                 tokenizer):
        self.cfg, self.rt, self.chunks, self.optimizer = cfg, rt, chunks, optimizer
        self.objective, self.plan, self.tokenizer = objective, plan, tokenizer
        self.run_dir = Path(cfg.run.output_dir)
        layout_key = {"tp": rt.layout.tensor, "pp": rt.layout.pipeline, "dp": rt.layout.data,
                      "vpp": rt.layout.virtual_pipeline}
        self.checkpointer = Checkpointer(cfg.checkpoint, self.run_dir, rt.rank, layout_key,
                                         on_gpu=rt.device == "cuda", load_state=objective.load_state(),
                                         loadable_kinds=objective.loadable_kinds)
        self.nan_guard = NanGuard(cfg.run.max_consecutive_nan_steps)
        self._nan_fault_steps = set(cfg.run.inject_nan_at_steps)
        self.step = plan.first_step(plan.start_index)  # global step: steps finished so far
        self.consumed_tokens = 0
        self.seq_length, self.shape = stage_shape(cfg, plan.stages[plan.start_index])  # what the model is built for
        self._resume()
        self.metrics = MetricsLogger(self.run_dir, cfg.logging, total_iterations=plan.end_step,
                                     flops_per_token=self.shape.flops_per_token(self.seq_length),
                                     num_gpus=rt.world_size, start_iteration=self.step,
                                     run_config=cfg.to_dict(), rank=rt.rank, on_gpu=rt.device == "cuda")
        self._datasets: dict[int, tuple] = {}
        self.evaluation = build_evaluation(cfg, chunks, tokenizer)

    # -- resume ----------------------------------------------------------------------------
    def _resume(self) -> None:
        directory, own = self.checkpointer.find_resume_point()
        if directory is None:
            log.info(f"fresh run: {self.plan.end_step - self.step} steps over stages "
                     f"{[self.plan.stages[i].name for i in self.plan.run_range]}")
            return
        meta = self.checkpointer.load(self.chunks, self.optimizer, directory, own, self._checkpoint_model)
        if own and not self.cfg.checkpoint.reset_progress:
            state = meta["train_state"]
            self.step, self.consumed_tokens = state["step"], state["consumed_tokens"]
            if "nan_guard" in state:
                self.nan_guard.load_state_dict(state["nan_guard"])
            log.info(f"resumed at step {self.step} ({self.consumed_tokens:,} tokens consumed)")
        if self.step < self.plan.end_step:
            self._enter_stage(self.plan.locate(self.step)[0])  # resumed in a later stage: its RoPE

    def _checkpoint_model(self, meta: dict, own: bool) -> dict:
        """The model a checkpoint must describe: this run's own, the shape its last step trained
        under; one this run starts from (checkpoint.load), the first stage's (a RoPE change from it
        is a context extension, checked by the checkpointer)."""
        step = meta.get("train_state", {}).get("step", 0) if own else 0
        return self._trained_shape(step).to_dict()

    def _trained_shape(self, step: int) -> ModelShape:
        """The shape of the stage that global step `step - 1` trained in; before any step of this
        run, the shape of the stage it starts in."""
        plan = self.plan
        index = plan.start_index if step <= plan.first_step(plan.start_index) else \
            min(plan.locate(step - 1)[0], len(plan.stages) - 1)
        return stage_shape(self.cfg, plan.stages[index])[1]

    def _enter_stage(self, index: int) -> None:
        """Switch the model to the stage's RoPE and window when they differ from the current ones."""
        seq_length, shape = stage_shape(self.cfg, self.plan.stages[index])
        if shape != self.shape:
            mcore_rope.switch_rope(self.chunks, shape)
            log.info(f"stage {self.plan.stages[index].name}: RoPE and window "
                     f"{_position(self.shape)} -> {_position(shape)}, seq_length {self.seq_length} -> {seq_length}")
        self.seq_length, self.shape = seq_length, shape

    def _meta(self) -> dict:
        return {"train_state": {"step": self.step, "consumed_tokens": self.consumed_tokens,
                                "nan_guard": self.nan_guard.state_dict()},
                "config": self.cfg.to_dict(), "model": self._trained_shape(self.step).to_dict(),
                "model_kind": self.objective.model_kind,
                "tokenizer": str(self.cfg.data.tokenizer), "tokenizer_fingerprint": self.tokenizer.fingerprint}

    def save(self) -> None:
        mcore_step.sync_params(self.chunks)  # an overlapped gather leaves other shards' params stale
        self.checkpointer.save(self.chunks, self.optimizer, self.step, self._meta())

    # -- data ------------------------------------------------------------------------------
    def _stage_datasets(self, index: int):
        if index not in self._datasets:  # keep one stage's datasets alive at a time
            self._datasets = {index: self.objective.datasets(index, self.plan)}
        return self._datasets[index]

    # -- loop ------------------------------------------------------------------------------
    def train(self) -> str:
        """Run until the selected stages end, a stop is requested, or training diverges.
        Returns why it stopped: "done", "signal", "exit_after_steps" or "diverged"."""
        self.checkpointer.install_signal_handlers()
        steps_this_run = 0
        while self.step < self.plan.end_step:
            stage_index, stage_step = self.plan.locate(self.step)
            self._enter_stage(stage_index)
            try:
                self._train_one_step(stage_index, stage_step)
            except TrainingDiverged as e:
                log.error(f"stopping: {e}; saving the last good state")
                self.save()
                return "diverged"
            steps_this_run += 1
            stage_done = self.plan.locate(self.step)[0] != stage_index
            self._maybe_validate(stage_index, stage_done)
            self._maybe_evaluate(stage_done)
            reason = self._stop_reason(steps_this_run)
            if reason or self._periodic_save_due() or stage_done:
                self.save()
            if reason:
                return reason
        return "done"

    def _train_one_step(self, stage_index: int, stage_step: int) -> None:
        data = self.cfg.data
        lr = self.plan.lr(self.step)
        mcore_step.set_learning_rate(self.optimizer, lr)
        batches, extra = self._step_batches(stage_index, stage_step)
        start = time.perf_counter()
        objective = self.objective
        result = mcore_step.train_step(objective.schedule_chunks, self.optimizer, objective.forward_step, batches,
                                       data.micro_batch_size, self.seq_length, loss_key=objective.loss_key,
                                       extra_keys=objective.extra_keys, should_step=self._loss_is_good)
        if self.rt.device == "cuda":
            torch.cuda.synchronize()  # the step's kernels are queued; time them in this step
        seconds = time.perf_counter() - start
        skipped = not result.update_successful
        tokens = data.global_batch_size * self.seq_length
        self.step += 1
        self.consumed_tokens += tokens
        self.metrics.log_step(self.step, loss=result.loss, lr=lr, tokens=tokens, seconds=seconds,
                              flops_per_token=self.shape.flops_per_token(self.seq_length),
                              consumed_tokens=self.consumed_tokens, z_loss=result.extra.get("z loss"),
                              grad_norm=result.grad_norm, skipped=skipped,
                              extra={**{k: v for k, v in result.extra.items() if k != "z loss"}, **extra})
        self.checkpointer.poll()

    def _step_batches(self, stage_index: int, stage_step: int) -> tuple[list[dict], dict]:
        """This rank's micro-batches for the step, and extra metrics (online DPO's sampling)."""
        train, _ = self._stage_datasets(stage_index)
        return self.objective.step_batches(train, stage_step, self.step, self.chunks)

    def _loss_is_good(self, loss: float) -> bool:
        if self.step + 1 in self._nan_fault_steps:
            loss = float("nan")
        return self.nan_guard.check(loss, step=self.step + 1)  # raises TrainingDiverged after too many

    def _periodic_save_due(self) -> bool:
        interval = self.cfg.checkpoint.save_interval
        return bool(interval) and self.step % interval == 0

    def _stop_reason(self, steps_this_run: int) -> Optional[str]:
        if self.checkpointer.signal_received():
            return "signal"
        limit = self.cfg.run.exit_after_steps
        if limit is not None and steps_this_run >= limit and self.step < self.plan.end_step:
            return "exit_after_steps"
        return None

    # -- validation ------------------------------------------------------------------------
    def _maybe_validate(self, stage_index: int, stage_done: bool) -> None:
        interval = self.cfg.data.eval_interval
        if not (stage_done or (interval and self.step % interval == 0)):
            return
        losses = self.validate(stage_index)
        if losses:
            self.metrics.log_validation(self.step, losses)

    def validate(self, stage_index: int) -> dict[str, float]:
        _, valid = self._stage_datasets(stage_index)
        data = self.cfg.data
        losses = {}
        mcore_step.sync_params(self.chunks)
        for chunk in self.chunks:
            chunk.eval()
        for category, dataset in valid.items():
            batches = self.objective.validation_batches(dataset)
            if not batches:
                continue
            with torch.no_grad():
                dicts = mcore_step.run_schedule(self.objective.schedule_chunks, self.objective.forward_step, batches,
                                                data.micro_batch_size, self.seq_length, forward_only=True)
            for name, key in self.objective.valid_keys.items():
                label = category if name == "lm loss" else name  # post-training holds one held-out set
                losses[label] = mcore_step.average_losses(dicts, key)
        for chunk in self.chunks:
            chunk.train()
        return losses

    def _maybe_evaluate(self, stage_done: bool) -> None:
        if self.evaluation is None or not self.evaluation.due(self.step, stage_done):
            return
        start = time.perf_counter()
        metrics = self.evaluation.run()  # every rank takes part; rank 0 gets the numbers
        if metrics:  # None off rank 0; {} when every metric of every task was undefined
            self.metrics.log_evaluation(self.step, metrics, seconds=time.perf_counter() - start)

    def close(self) -> None:
        self.objective.close()
        self.checkpointer.finalize()
        self.metrics.close()
        runtime.shutdown()


def _position(shape: ModelShape) -> str:
    scaling = shape.rope_scaling.hf_items() if shape.rope_scaling else None
    return f"(theta {shape.rotary_base}, window {shape.max_position_embeddings}, rope_scaling {scaling})"
