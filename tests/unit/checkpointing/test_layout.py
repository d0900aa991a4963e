import pytest

from megatron_kanana.checkpointing import layout


def make(root, step, complete=True):
    d = layout.partial_dir(root, step)
    d.mkdir(parents=True)
    if complete:
        layout.write_meta(d, {"step": step})
        return layout.publish(root, step)
    return d


def test_publish_moves_latest_only_when_complete(tmp_path):
    make(tmp_path, 10)
    assert (tmp_path / "latest").read_text().strip() == "iter_0000010"
    make(tmp_path, 20, complete=False)  # a save killed half-way
    assert layout.resolve(tmp_path) == tmp_path / "iter_0000010"
    assert layout.completed_steps(tmp_path) == [10]


def test_resolve_accepts_run_dir_and_iter_dir(tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    final = make(ckpts, 5)
    assert layout.resolve(tmp_path / "run") == final
    assert layout.resolve(final) == final
    with pytest.raises(layout.CheckpointError, match="neither a checkpoint"):
        layout.resolve(tmp_path)


def test_latest_pointing_at_incomplete_checkpoint_is_an_error(tmp_path):
    make(tmp_path, 1)
    layout.write_latest(tmp_path, "iter_0000099")
    with pytest.raises(layout.CheckpointError, match="not a complete checkpoint"):
        layout.resolve(tmp_path)


def test_prune_keeps_newest_and_latest_and_drops_partials(tmp_path):
    for step in (1, 2, 3, 4):
        make(tmp_path, step)
    make(tmp_path, 5, complete=False)
    layout.write_latest(tmp_path, "iter_0000001")  # e.g. rolled back by hand: never delete it
    removed = layout.prune(tmp_path, keep_last=2)
    assert removed == [2]
    assert layout.completed_steps(tmp_path) == [1, 3, 4]
    assert not list(tmp_path.glob("*.partial"))
