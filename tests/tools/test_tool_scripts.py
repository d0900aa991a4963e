"""tools/*.py forward to their `kanana` subcommand (Megatron-LM-style entry points)."""
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed.launch import cpu_env

TOOLS = Path(__file__).resolve().parents[2] / "tools"
FORWARDERS = {"convert_checkpoint.py": "convert", "upscale_depth.py": "upscale-depth", "prune.py": "prune",
              "prune_score.py": "prune-score", "preprocess_data.py": "preprocess"}


@pytest.mark.parametrize("script,command", sorted(FORWARDERS.items()))
def test_script_forwards_to_kanana(script, command):
    proc = subprocess.run([sys.executable, str(TOOLS / script), "--help"], env=cpu_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: kanana {command} ")
