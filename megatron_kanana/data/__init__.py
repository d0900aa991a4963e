"""What the models train on: tokenizers, JSONL -> indexed-dataset preprocessing, stage mixtures, the demo corpus."""
