"""Using a trained checkpoint: text generation."""
