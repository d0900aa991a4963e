"""The `online_dpo` config section: DPO on pairs the policy samples itself, scored by a reward model.

    online_dpo:
      prompts: [data/prompts.jsonl]        # {"prompt": ...} lines (a preference JSONL works too)
      reward_model: runs/rm/checkpoints    # `kanana train` with a `reward` section
      reference: null                      # frozen reference; null = checkpoint.load (the offline-DPO model)
      valid_prefixes: [data/prefs_valid]   # held-out preference pairs: preference accuracy vs the reference
      num_samples: 4                       # responses per prompt; best vs worst by reward
      max_new_tokens: 512
      temperature: 1.0
      max_staleness: 1                     # 1: sample step k+1 while training step k; 0: synchronous
      train_steps: 1000

Kanana §6: online DPO starts from the offline-DPO model, samples responses
asynchronously, scores them with a Bradley–Terry reward model and keeps the
reference fixed (updating it lengthened responses). Batch sizes count rows as in
offline DPO: data.global_batch_size = 64 means 32 prompts a step, each sampled
`num_samples` times and turned into one (best, worst) pair.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Optional

from megatron_kanana.config.section import ConfigError, Section
from megatron_kanana.data.chat_template import TEMPLATES
from megatron_kanana.posttrain.dpo import check_objective


@dataclasses.dataclass(frozen=True)
class OnlineDPOConfig(Section):
    prompts: list[str] = field(metadata={
        "path": True, "help": "Prompt JSONL files or globs ({\"prompt\": ...} per line)."})
    reward_model: str = field(metadata={
        "path": True, "help": "Reward-model checkpoint (from a `reward` run) that scores samples."})
    reference: Optional[str] = field(default=None, metadata={
        "path": True, "help": "Frozen reference checkpoint; None = checkpoint.load. Kept fixed for the whole run."})
    valid_prefixes: Optional[list[str]] = field(default=None, metadata={
        "path": True, "help": "Held-out preference datasets: DPO loss and preference accuracy at each validation."})
    seq_length: int = field(default=2048, metadata={"help": "Positions per row (prompt + response); = data.seq_length."})
    template: str = field(default="auto", metadata={"help": "Chat template for the prompts: auto, llama3 or plain."})
    num_samples: int = field(default=4, metadata={"help": "Responses sampled per prompt (>= 2); best vs worst."})
    max_new_tokens: int = field(default=512, metadata={"help": "Longest response sampled."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (> 0: pairs need variety)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass kept, in (0, 1]."})
    top_k: int = field(default=0, metadata={"help": "Keep the k most likely tokens; 0 = no limit."})
    max_staleness: int = field(default=1, metadata={
        "help": "1: responses for step k+1 are sampled (with the weights before step k's update) while step k "
                "trains — one step off-policy; 0: sample then train, on-policy, no overlap."})
    beta: float = field(default=0.1, metadata={"help": "β of the DPO loss."})
    label_smoothing: float = field(default=0.0, metadata={"help": "ε of conservative DPO (0 = plain DPO)."})
    sft_loss_weight: float = field(default=0.0, metadata={"help": "λ: NLL of the chosen responses added."})
    train_steps: int = field(default=100, metadata={"help": "Optimizer steps (each on freshly sampled pairs)."})
    strict: bool = field(default=False, metadata={"help": "A bad or too-long prompt is an error, not a skip."})

    def validate(self) -> None:
        if not self.prompts:
            raise ConfigError("prompts: at least one prompt file is needed")
        if not self.reward_model:
            raise ConfigError("reward_model: the checkpoint of a trained reward model is needed")
        if self.template not in ("auto", *TEMPLATES):
            raise ConfigError(f"template: {self.template!r} is not one of {['auto', *TEMPLATES]}")
        if self.num_samples < 2:
            raise ConfigError(f"num_samples must be >= 2 (a pair needs two responses), got {self.num_samples}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.max_new_tokens >= self.seq_length:
            raise ConfigError(f"max_new_tokens ({self.max_new_tokens}) must leave room for the prompt in "
                              f"seq_length ({self.seq_length})")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0 (greedy decoding gives N identical responses), "
                              f"got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")
        if self.max_staleness not in (0, 1):
            raise ConfigError(f"max_staleness must be 0 (synchronous) or 1 (one step off-policy), "
                              f"got {self.max_staleness}")
        check_objective(self)
        if self.train_steps < 1:
            raise ConfigError(f"train_steps must be >= 1, got {self.train_steps}")

    def online_plan(self, schedule):
        """A one-stage StagePlan named "online_dpo" (the trainer's loop, LR and resume unchanged)."""
        from megatron_kanana.training.stages import one_stage_plan

        return one_stage_plan("online_dpo", self.train_steps, [], schedule)
