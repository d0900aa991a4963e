"""Post-training: supervised fine-tuning on chat conversations (data, packing, the SFT step)."""
