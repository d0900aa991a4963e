"""Checkpoint directories: layout, atomic publication, the latest pointer."""
