"""mcore/checkpoint: megatron's own checkpoint reads go through the restricted unpickler too
(its load, load_tensors_metadata and load_sharded_metadata all build their DCP reader in one
function that mcore/checkpoint replaces), and its common state loads weights-only."""
from __future__ import annotations

import pytest
import torch
import torch.distributed.checkpoint as dcp

from megatron_kanana.checkpointing.layout import CheckpointError
from megatron_kanana.mcore import checkpoint as mcore_ckpt
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing import serialization
from tests.unit.checkpointing.test_safe_load import RunsCode, tamper_metadata


@pytest.fixture()
def tampered(tmp_path):
    directory = tmp_path / "iter_0000001"
    dcp.save({"w": torch.ones(2)}, checkpoint_id=str(directory), no_dist=True)
    marker = tmp_path / "MARKER"
    tamper_metadata(directory, marker)
    return directory, marker


@pytest.mark.parametrize("read", [
    lambda d: mcore_ckpt.load({}, d),
    lambda d: dist_checkpointing.load_tensors_metadata(str(d)),
    lambda d: serialization.load_sharded_metadata(str(d)),
], ids=["kanana_load", "megatron_load_tensors_metadata", "megatron_load_sharded_metadata"])
def test_tampered_metadata_never_runs(tampered, read):
    directory, marker = tampered
    (directory / "metadata.json").write_text('{"sharded_backend": "torch_dist", "sharded_backend_version": 1, '
                                             '"common_backend": "torch", "common_backend_version": 1}')
    with pytest.raises(CheckpointError, match=r"iter_0000001/\.metadata"):
        read(directory)
    assert not marker.exists()


def test_common_state_is_weights_only_whatever_the_environment(tmp_path, monkeypatch):
    marker = tmp_path / "MARKER"
    torch.save({"args": RunsCode(marker)}, tmp_path / "common.pt")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="common.pt: refused to load"):
        mcore_ckpt._SafeCommonLoadStrategy().load_common(tmp_path)
    assert not marker.exists()
