"""The training loop: stages of a mixture on megatron-core, with exact resume.

    trainer = Trainer(config); trainer.train(); trainer.close()

Per step: LR from the stage plan → this rank's micro-batches → megatron's
schedule (forward/backward, gradient reduction) → NaN guard → optimizer step →
metrics → maybe validate / save / stop. The data position and the LR are pure
functions of the global step, so a resumed run repeats nothing and skips
nothing.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import torch

from megatron_kanana.config.root import PAIR_MODES, TrainConfig
from megatron_kanana.log import get_logger
from megatron_kanana.mcore import distill as mcore_distill, model as mcore_model, runtime, step as mcore_step
from megatron_kanana.mcore.datasets import build_gpt_datasets
from megatron_kanana.training.checkpointer import Checkpointer
from megatron_kanana.training.data import collate, micro_batches
from megatron_kanana.parallel.config import check_layout
from megatron_kanana.training import distill_step
from megatron_kanana.training.distill_step import make_distill_forward_step
from megatron_kanana.training.fused_lm_step import select_forward_step
from megatron_kanana.training.metrics import MetricsLogger
from megatron_kanana.training.nan_guard import NanGuard, TrainingDiverged
from megatron_kanana.training.stages import StagePlan, plan_stages
from megatron_kanana.posttrain import wiring as posttrain
from megatron_kanana.posttrain.preference import pair_micro_batches, step_pair_micro_batches
from megatron_kanana.posttrain.sft_step import make_sft_forward_step

log = get_logger(__name__)


def _injected_nan_steps() -> set[int]:
    """Fault injection for tests and drills: KANANA_INJECT_NAN_AT_STEPS=3,4 makes the
    loss of those (1-based) steps NaN as far as the NaN guard is concerned."""
    raw = os.environ.get("KANANA_INJECT_NAN_AT_STEPS", "")
    return {int(s) for s in raw.split(",") if s.strip()}


class Trainer:
    def __init__(self, cfg: TrainConfig):
        from megatron_kanana.data.tokenizer import load_tokenizer

        self.cfg = cfg
        self.run_dir = Path(cfg.run.output_dir)
        self.tokenizer = load_tokenizer(cfg.data.tokenizer)
        cfg.check(self.tokenizer.vocab_size)
        self.mode = posttrain.mode(cfg)  # "pretrain", or the post-training section that is set
        self.plan: StagePlan = posttrain.stage_plan(cfg) or plan_stages(cfg.data, cfg.schedule)
        self.rt = runtime.initialize(cfg.parallel, cfg.model, seed=cfg.run.seed)
        cfg.data.accumulation_steps(self.rt.layout.data)  # the global batch must split over DP ranks
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tconfig = mcore_model.transformer_config(cfg.model, cfg.parallel, self.rt.device, bf16=cfg.optim.bf16)
        student = mcore_model.build_model(cfg.model, tconfig, max_sequence_length=cfg.data.seq_length,
                                          kernels=cfg.model_kernels)
        posttrain.prepare_model(cfg, student)
        self.chunks = mcore_step.wrap_ddp(student, use_distributed_optimizer=cfg.optim.use_distributed_optimizer)
        peak_lr = cfg.schedule.lr
        self.optimizer = mcore_step.build_optimizer(self.chunks, mcore_step.OptimizerSettings(
            lr=peak_lr, weight_decay=cfg.optim.decay_for(peak_lr), adam_beta1=cfg.optim.adam_beta1,
            adam_beta2=cfg.optim.adam_beta2, adam_eps=cfg.optim.adam_eps, clip_grad=cfg.optim.clip_grad,
            use_distributed_optimizer=cfg.optim.use_distributed_optimizer))
        self.forward_step = (make_sft_forward_step(cfg.optim.z_loss_coef) if cfg.sft
                             else select_forward_step(cfg.model_kernels, cfg.optim.z_loss_coef))
        self.loss_key, self.extra_keys = "lm loss", ("z loss",)
        self.schedule_chunks = self.chunks  # what megatron's schedules run: the student, or student + teacher
        self.valid_keys = {"lm loss": "lm loss"}  # validation: reported name -> loss-dict key
        self.online = None  # online DPO's per-step batch source
        if cfg.distill is not None:
            self._add_teacher()
        posttrain.configure(self)
        layout_key = {"tp": self.rt.layout.tensor, "pp": self.rt.layout.pipeline, "dp": self.rt.layout.data,
                      "vpp": self.rt.layout.virtual_pipeline}
        self.checkpointer = Checkpointer(cfg.checkpoint, self.run_dir, self.rt.rank, layout_key,
                                         on_gpu=self.rt.device == "cuda", load_state=posttrain.load_state(cfg),
                                         loadable_kinds=posttrain.loadable_kinds(cfg))
        self.nan_guard = NanGuard(cfg.run.max_consecutive_nan_steps)
        self._nan_fault_steps = _injected_nan_steps()
        self.step = self.plan.first_step(self.plan.start_index)  # global step: steps finished so far
        self.consumed_tokens = 0
        self._resume()
        self.metrics = MetricsLogger(self.run_dir, cfg.logging, total_iterations=self.plan.end_step,
                                     flops_per_token=cfg.model.flops_per_token(cfg.data.seq_length),
                                     num_gpus=self.rt.world_size, start_iteration=self.step,
                                     run_config=cfg.to_dict(), rank=self.rt.rank,
                                     on_gpu=self.rt.device == "cuda")
        self._datasets: dict[int, tuple] = {}

    def _add_teacher(self) -> None:
        """Distillation: a frozen teacher beside the student, stage by stage (mcore/distill.py)."""
        distill = self.cfg.distill
        shape = distill.teacher_shape()
        check_layout(self.cfg.parallel, shape, self.rt.world_size, self.rt.device)
        directory = distill.teacher_checkpoint()
        kernels = self.cfg.model_kernels  # the teacher's LM head matches the student's (fused or not)
        teacher = mcore_distill.build_teacher(shape, self.cfg.parallel, self.rt.device, directory,
                                              seq_length=self.cfg.data.seq_length, bf16=self.cfg.optim.bf16,
                                              kernels=kernels)
        self.schedule_chunks = mcore_distill.pair_stages(self.chunks, teacher)
        self.forward_step = make_distill_forward_step(distill, self.cfg.optim.z_loss_coef, kernels)
        self.loss_key, self.extra_keys = distill_step.LOSS_KEY, distill_step.EXTRA_KEYS
        log.info(f"distilling from {directory} (teacher: {shape.num_layers} layers × {shape.hidden_size}, "
                 f"T={distill.temperature}, kl_weight={distill.kl_weight}, lm_loss_weight={distill.lm_loss_weight}, "
                 f"LM head {kernels.lm_head_loss})")

    # -- resume ----------------------------------------------------------------------------
    def _resume(self) -> None:
        directory, own = self.checkpointer.find_resume_point()
        if directory is None:
            log.info(f"fresh run: {self.plan.end_step - self.step} steps over stages "
                     f"{[self.plan.stages[i].name for i in self.plan.run_range]}")
            return
        meta = self.checkpointer.load(self.chunks, self.optimizer, directory, own, self.cfg.model.to_dict())
        if own and not self.cfg.checkpoint.reset_progress:
            state = meta["train_state"]
            self.step, self.consumed_tokens = state["step"], state["consumed_tokens"]
            if "nan_guard" in state:
                self.nan_guard.load_state_dict(state["nan_guard"])
            log.info(f"resumed at step {self.step} ({self.consumed_tokens:,} tokens consumed)")

    def _meta(self) -> dict:
        return {"train_state": {"step": self.step, "consumed_tokens": self.consumed_tokens,
                                "nan_guard": self.nan_guard.state_dict()},
                "config": self.cfg.to_dict(), "model": self.cfg.model.to_dict(),
                "model_kind": posttrain.model_kind(self.cfg),
                "tokenizer": str(self.cfg.data.tokenizer), "tokenizer_fingerprint": self.tokenizer.fingerprint}

    def save(self) -> None:
        self.checkpointer.save(self.chunks, self.optimizer, self.step, self._meta())

    # -- data ------------------------------------------------------------------------------
    def _stage_datasets(self, index: int):
        if index not in self._datasets and self.mode != "pretrain":
            self._datasets = {index: posttrain.datasets(self.cfg, self.plan, index, self.tokenizer.fingerprint)}
        if index not in self._datasets:
            stage, data = self.plan.stages[index], self.cfg.data
            cache = self.run_dir / "data_cache"
            train, _ = build_gpt_datasets(stage.blend, seq_length=data.seq_length, seed=self.cfg.run.seed,
                                          tokenizer=self.tokenizer, num_train_samples=stage.steps * data.global_batch_size,
                                          num_valid_samples=0, split=data.split, cache_dir=cache)
            valid = {}
            if data.eval_samples and data.split[1] > 0:
                for category, blend in sorted(stage.categories.items()):
                    _, valid[category] = build_gpt_datasets(
                        blend, seq_length=data.seq_length, seed=self.cfg.run.seed, tokenizer=self.tokenizer,
                        num_train_samples=1, num_valid_samples=data.eval_samples, split=data.split, cache_dir=cache)
            self._datasets = {index: (train, valid)}  # keep one stage's datasets alive at a time
        return self._datasets[index]

    # -- loop ------------------------------------------------------------------------------
    def train(self) -> str:
        """Run until the selected stages end, a stop is requested, or training diverges.
        Returns why it stopped: "done", "signal", "exit_after_steps" or "diverged"."""
        self.checkpointer.install_signal_handlers()
        steps_this_run = 0
        while self.step < self.plan.end_step:
            stage_index, stage_step = self.plan.locate(self.step)
            try:
                self._train_one_step(stage_index, stage_step)
            except TrainingDiverged as e:
                log.error(f"stopping: {e}; saving the last good state")
                self.save()
                return "diverged"
            steps_this_run += 1
            stage_done = self.plan.locate(self.step)[0] != stage_index
            self._maybe_validate(stage_index, stage_done)
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
        result = mcore_step.train_step(self.schedule_chunks, self.optimizer, self.forward_step, batches,
                                       data.micro_batch_size, data.seq_length, loss_key=self.loss_key,
                                       extra_keys=self.extra_keys, should_step=self._loss_is_good)
        if self.rt.device == "cuda":
            torch.cuda.synchronize()  # the step's kernels are queued; time them in this step
        seconds = time.perf_counter() - start
        skipped = not result.update_successful
        tokens = data.global_batch_size * data.seq_length
        self.step += 1
        self.consumed_tokens += tokens
        self.metrics.log_step(self.step, loss=result.loss, lr=lr, tokens=tokens, seconds=seconds,
                              consumed_tokens=self.consumed_tokens, z_loss=result.extra.get("z loss"),
                              grad_norm=result.grad_norm, skipped=skipped,
                              extra={**{k: v for k, v in result.extra.items() if k != "z loss"}, **extra})
        self.checkpointer.poll()

    def _step_batches(self, stage_index: int, stage_step: int) -> tuple[list[dict], dict]:
        """This rank's micro-batches for the step, and extra metrics (online DPO's sampling)."""
        if self.online is not None:
            return self.online.step_batches(self.step, self.chunks, self.plan.end_step)
        train, _ = self._stage_datasets(stage_index)
        select = step_pair_micro_batches if self.mode in PAIR_MODES else micro_batches
        return select(train, stage_step, self.cfg.data, runtime.data_rank(), self.rt.layout.data), {}

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
        for chunk in self.chunks:
            chunk.eval()
        for category, dataset in valid.items():
            dp, rank = self.rt.layout.data, runtime.data_rank()
            batches = self._validation_batches(dataset, dp, rank)
            if not batches:
                continue
            with torch.no_grad():
                dicts = mcore_step.run_schedule(self.schedule_chunks, self.forward_step, batches, data.micro_batch_size,
                                                data.seq_length, forward_only=True)
            for name, key in self.valid_keys.items():
                label = category if name == "lm loss" else name  # post-training holds one held-out set
                losses[label] = mcore_step.average_losses(dicts, key)
        for chunk in self.chunks:
            chunk.train()
        return losses

    def _validation_batches(self, dataset, dp: int, rank: int) -> list[dict]:
        """This data-parallel rank's equal share of a validation set, in whole micro-batches
        (pair modes: rows of whole pairs, like their training batches)."""
        mbs = self.cfg.data.micro_batch_size
        if self.mode in PAIR_MODES:
            per_rank = max(1, 2 * len(dataset) // dp) // mbs * mbs
            return pair_micro_batches(dataset, rank * per_rank // 2, per_rank, mbs) if per_rank else []
        per_rank = max(1, len(dataset) // dp) // mbs * mbs
        samples = [dataset[i] for i in range(rank * per_rank, (rank + 1) * per_rank)]
        return [collate(samples[i:i + mbs]) for i in range(0, per_rank, mbs)]

    def close(self) -> None:
        if self.online is not None:
            self.online.close()
        self.checkpointer.finalize()
        self.metrics.close()
        runtime.shutdown()
