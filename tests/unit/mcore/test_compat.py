"""One code base for megatron-core 0.16.1 through 0.19.x: the version gate names both versions,
the layer spec's MLP entry is read and built in the installed version's form, and a dist
checkpoint in 0.17+'s layout is refused under 0.16 with both versions named."""
from __future__ import annotations

import pytest

from megatron_kanana.mcore import compat


@pytest.mark.parametrize("version", ["0.16.1", "0.17.0", "0.19.2", "0.19.10rc1"])
def test_supported_versions_pass(version):
    compat.check_version(version)


@pytest.mark.parametrize("version", ["0.16.0", "0.15.3", "0.20.0", "1.0.0"])
def test_unsupported_version_names_both(version):
    with pytest.raises(compat.UnsupportedMegatronCore, match=rf"megatron-core {version} is installed; "
                                                             r"megatron_kanana supports megatron-core >=0\.16\.1,<0\.20"):
        compat.check_version(version)


def test_installed_version_is_the_one_checked():
    from megatron.core import package_info

    # 0.19's package_info appends "+<git sha of the current directory>" when run inside a git checkout
    assert compat.INSTALLED == package_info.__version__.split("+")[0]
    assert compat.VERSION[:2] == tuple(int(x) for x in package_info.__version__.split(".")[:2])


def test_kernel_mlp_spec_builds_in_the_installed_form():
    from megatron_kanana.mcore.kernel_layers import KernelSwiGLUMLP
    from megatron_kanana.mcore.model import layer_spec
    from megatron_kanana.training.kernels_config import KernelsConfig

    spec = layer_spec(use_transformer_engine=False, kernels=KernelsConfig(swiglu="torch"))
    mlp = spec.submodules.mlp
    submodules = compat.mlp_submodules(mlp)
    assert submodules.linear_fc1 is not None and submodules.linear_fc2 is not None
    if compat.MLP_IS_BUILDER:
        assert mlp.keywords["module"] is KernelSwiGLUMLP and mlp.keywords["params"] == {"impl": "torch"}
    else:
        assert mlp.module is KernelSwiGLUMLP and mlp.params == {"impl": "torch"}


def test_new_layout_checkpoint_is_refused_under_old_megatron(tmp_path, monkeypatch):
    (tmp_path / compat.DIST_CONFIG).write_text('{"sharded_backend": "torch_dist"}')
    monkeypatch.setattr(compat, "VERSION", (0, 16, 1))
    monkeypatch.setattr(compat, "INSTALLED", "0.16.1")
    with pytest.raises(compat.CheckpointVersionError, match=r"saved by megatron-core 0\.17 or newer .* "
                                                            r"installed megatron-core 0\.16\.1 cannot read it"):
        compat.check_checkpoint_readable(tmp_path)
    (tmp_path / compat.COMMON_STATE).write_bytes(b"")  # 0.16's layout: fine
    compat.check_checkpoint_readable(tmp_path)
    monkeypatch.setattr(compat, "VERSION", (0, 19, 2))  # 0.19 reads both layouts
    (tmp_path / compat.COMMON_STATE).unlink()
    compat.check_checkpoint_readable(tmp_path)
