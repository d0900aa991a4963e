"""Kanana's cascaded data curation (TR §2.2), offline and Korean-aware.

normalise -> exact + MinHash dedup -> language ID -> heuristics -> PII -> quality
classifier, one module per stage; `pipeline.py` runs them as three passes over
JSONL shards (see its docstring for the dedup and resume design) and
`curate.py` is the `kanana curate` command.
"""
