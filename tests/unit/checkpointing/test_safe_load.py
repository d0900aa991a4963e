"""checkpointing/safe_load: a checkpoint's metadata and objects are data, never code.

Each tampered file here would run `touch MARKER` under plain pickle / torch.load(weights_only=False);
the tests check it is refused with an error naming the file and that the marker never appears."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.distributed.checkpoint as dcp

from megatron_kanana.checkpointing.layout import CheckpointError
from megatron_kanana.checkpointing.safe_load import (SafeFileSystemReader, load_weights_only, read_dcp_metadata,
                                                     restricted_loads)


class RunsCode:
    """Unpickling this calls os.system (what an attacker puts in a shared checkpoint)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def tamper_metadata(directory, marker) -> None:
    (directory / ".metadata").write_bytes(pickle.dumps(RunsCode(marker)))


@pytest.fixture()
def saved(tmp_path):
    directory = tmp_path / "ckpt"
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "step": torch.tensor(3)}
    dcp.save(state, checkpoint_id=str(directory), no_dist=True)
    return directory, state


def test_real_metadata_is_admitted_and_loads(saved):
    directory, state = saved
    metadata = read_dcp_metadata(directory)
    assert set(metadata.state_dict_metadata) == {"w", "step"}
    out = {"w": torch.zeros(2, 3), "step": torch.tensor(0)}
    dcp.load(out, storage_reader=SafeFileSystemReader(directory), no_dist=True)
    assert torch.equal(out["w"], state["w"]) and out["step"].item() == 3


def test_metadata_that_runs_code_is_refused_naming_the_file(saved, tmp_path):
    directory, _ = saved
    marker = tmp_path / "MARKER"
    tamper_metadata(directory, marker)
    with pytest.raises(CheckpointError, match=r"ckpt/\.metadata.*refusing to load posix\.system"):
        read_dcp_metadata(directory)
    with pytest.raises(BaseException, match="refusing to load posix.system"):  # DCP wraps it per rank
        dcp.load({"w": torch.zeros(2, 3)}, storage_reader=SafeFileSystemReader(directory), no_dist=True)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "delete", "not_metadata"])
def test_damaged_metadata_names_the_file(saved, damage):
    directory, _ = saved
    path = directory / ".metadata"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "delete":
        path.unlink()
    else:
        path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match=r"\.metadata"):
        read_dcp_metadata(directory)


def test_byte_items_are_loaded_weights_only(tmp_path):
    marker = tmp_path / "MARKER"
    directory = tmp_path / "ckpt"
    dcp.save({"obj": RunsCode(marker)}, checkpoint_id=str(directory), no_dist=True)
    assert not marker.exists()  # saving pickles the reduce tuple without calling it
    with pytest.raises(BaseException, match="refused to load object 'obj'"):
        dcp.load({"obj": None}, storage_reader=SafeFileSystemReader(directory), no_dist=True)
    assert not marker.exists()


def test_pt_files_are_weights_only_whatever_the_environment(tmp_path, monkeypatch):
    marker = tmp_path / "MARKER"
    path = tmp_path / "common.pt"
    torch.save({"x": RunsCode(marker)}, path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="common.pt: refused to load"):
        load_weights_only(path)
    assert not marker.exists()
    torch.save({"t": torch.ones(2), "n": 3}, path)
    assert load_weights_only(path)["n"] == 3


def test_restricted_unpickler_admits_only_listed_names():
    assert restricted_loads(pickle.dumps({"a": [1, 2.0, "x"], "s": torch.Size([2, 3])})) == {"a": [1, 2.0, "x"],
                                                                                              "s": torch.Size([2, 3])}
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        restricted_loads(pickle.dumps(eval))
