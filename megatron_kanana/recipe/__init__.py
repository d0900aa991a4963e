"""`kanana recipe`: the paper's claims reproduced in miniature by ordinary sub-runs (cli.py)."""
