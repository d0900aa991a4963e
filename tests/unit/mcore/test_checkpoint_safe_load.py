"""mcore/checkpoint: megatron's own checkpoint reads go through the restricted unpickler too
(its load, load_tensors_metadata and load_sharded_metadata all build their DCP reader in one
function that mcore/checkpoint replaces), and its common state loads weights-only, in each
megatron-core layout: common.pt (0.16) and a byte item inside the torch_dist files (0.17+)."""
from __future__ import annotations

import io
import pickle

import pytest
import torch
import torch.distributed.checkpoint as dcp

from megatron_kanana.checkpointing.layout import CheckpointError
from megatron_kanana.mcore import checkpoint as mcore_ckpt, compat
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing import serialization
from tests.unit.checkpointing.test_safe_load import RunsCode, tamper_metadata


def _mark_dist_checkpoint(directory):
    """megatron's metadata.json: what makes a folder a dist checkpoint to its loaders."""
    (directory / "metadata.json").write_text('{"sharded_backend": "torch_dist", "sharded_backend_version": 1, '
                                             '"common_backend": "torch", "common_backend_version": 1}')


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
    _mark_dist_checkpoint(directory)
    with pytest.raises(CheckpointError, match=r"iter_0000001/\.metadata"):
        read(directory)
    assert not marker.exists()


def test_common_state_is_weights_only_whatever_the_environment(tmp_path, monkeypatch):
    marker = tmp_path / "MARKER"
    torch.save({"args": RunsCode(marker)}, tmp_path / "common.pt")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="common.pt: refused to load"):
        mcore_ckpt._load_common_weights_only(tmp_path)
    assert not marker.exists()


@pytest.mark.skipif(compat.VERSION[:2] < (0, 17), reason="0.16 reads common.pt through load(common_strategy=), "
                    "tested above")
def test_megatrons_own_common_state_reader_is_weights_only(tmp_path, monkeypatch):
    """What 0.17+'s dist_checkpointing.load calls for a checkpoint in 0.16's layout."""
    marker = tmp_path / "MARKER"
    torch.save({"args": RunsCode(marker)}, tmp_path / "common.pt")
    _mark_dist_checkpoint(tmp_path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="common.pt: refused to load"):
        serialization.load_common_state_dict(str(tmp_path))
    assert not marker.exists()


@pytest.mark.skipif(compat.VERSION[:2] < (0, 17), reason="0.16 keeps the common state in common.pt only")
def test_common_state_inside_the_shards_is_weights_only(tmp_path, monkeypatch):
    """0.17+ stores the common state as a pickled byte item of the torch_dist files (megatron
    reads that one weights-only itself; refused either by it or by our reader)."""
    from megatron.core.dist_checkpointing.mapping import ShardedObject

    marker = tmp_path / "MARKER"
    payload = io.BytesIO()
    torch.save([{"args": RunsCode(marker)}], payload)
    payload.seek(0)
    key = ShardedObject("common_state", None, (1,), (0,)).unique_key
    dcp.save({key: payload}, checkpoint_id=str(tmp_path), no_dist=True)
    _mark_dist_checkpoint(tmp_path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises((CheckpointError, pickle.UnpicklingError), match="refused to load object|GLOBAL posix.system"):
        serialization.load_common_state_dict(str(tmp_path))
    assert not marker.exists()
