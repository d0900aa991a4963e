"""The megatron-core versions this code runs on, and the differences between them, in one place.

Supported: 0.16.1 (the newest for Python 3.11) through 0.19.x (Python 3.12), tested at both
ends (requirements/cpu.txt, requirements/py312.txt). `check_version()` runs when the mcore
package is imported (mcore/__init__.py), before any megatron module loads, so an unsupported
release fails at start with both versions named, not with an AttributeError deep in a step.

Differences handled here:
- 0.17 turned the layer spec's `mlp` from a ModuleSpec into a builder (a functools.partial
  of `MLP.as_mlp_submodule`) called with config=, pg_collection=, is_mtp_layer=, name=; a
  ModuleSpec of an MLP subclass is no longer re-wrapped. `mlp_submodules` reads either form;
  `mlp_spec` builds the right one for our MLP module.
- 0.17 moved a dist checkpoint's common (non-tensor) state from common.pt into the torch_dist
  files. 0.19 still reads common.pt, so 0.16.1's checkpoints load and resume there; 0.16.1
  cannot read the new layout, and `check_checkpoint_readable` says so, naming both versions,
  instead of a FileNotFoundError on common.pt. How the common state is read safely differs
  too: `install_safe_common_state`.
"""
from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path
from typing import Any, Mapping, Optional

from megatron_kanana.checkpointing.layout import CheckpointError

MIN_VERSION = (0, 16, 1)
MAX_MINOR = (0, 19)  # newest minor release tested; any 0.19.x patch
SUPPORTED = "megatron-core >=0.16.1,<0.20"


class UnsupportedMegatronCore(RuntimeError):
    """The installed megatron-core is outside the tested range."""


class CheckpointVersionError(CheckpointError):
    """A dist checkpoint needs a newer megatron-core than the installed one."""


def _parse(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts + [0] * (3 - len(parts)))


def installed_version() -> str:
    """Read from the distribution's metadata: importing megatron.core is what may fail."""
    try:
        return importlib.metadata.version("megatron-core")
    except importlib.metadata.PackageNotFoundError:  # a source checkout on PYTHONPATH
        from megatron.core import package_info

        return package_info.__version__


def check_version(version: Optional[str] = None) -> tuple[int, ...]:
    """The installed (or given) version as a tuple; UnsupportedMegatronCore outside the range."""
    version = version or installed_version()
    parsed = _parse(version)
    if parsed < MIN_VERSION or parsed[:2] > MAX_MINOR:
        raise UnsupportedMegatronCore(f"megatron-core {version} is installed; megatron_kanana supports {SUPPORTED} "
                                      "(pip install the version of requirements/cpu.txt or requirements/py312.txt)")
    return parsed


VERSION = check_version()
MLP_IS_BUILDER = VERSION[:2] >= (0, 17)  # layer specs' `mlp` is a builder, not a ModuleSpec
INSTALLED = installed_version()


def mlp_submodules(mlp: Any):
    """The MLPSubmodules of a layer spec's `mlp` entry in either form."""
    from megatron.core.transformer.spec_utils import ModuleSpec

    if isinstance(mlp, ModuleSpec):
        return mlp.submodules
    if isinstance(mlp, functools.partial) and "submodules" in mlp.keywords:
        return mlp.keywords["submodules"]
    raise TypeError(f"unrecognised MLP entry in the layer spec: {mlp!r}")


def mlp_spec(module: type, submodules, **params):
    """`module` (an MLP subclass taking tp_group= and the given params) as the layer spec's `mlp`."""
    from megatron.core.transformer.spec_utils import ModuleSpec

    if not MLP_IS_BUILDER:
        return ModuleSpec(module=module, submodules=submodules, params=params)
    return functools.partial(_build_mlp, module=module, submodules=submodules, params=params)


def _build_mlp(*, module: type, submodules, params: Mapping[str, Any], config, pg_collection,
               is_mtp_layer: bool = False, is_expert: bool = False, input_size: Optional[int] = None,
               ffn_hidden_size: Optional[int] = None, name: Optional[str] = None):
    del is_mtp_layer, name  # a dense MLP has no use for them
    return module(config, submodules, is_expert=is_expert, input_size=input_size, ffn_hidden_size=ffn_hidden_size,
                  tp_group=pg_collection.tp, **params)


COMMON_STATE = "common.pt"  # dist_checkpointing's COMMON_STATE_FNAME up to 0.16
DIST_CONFIG = "metadata.json"  # dist_checkpointing's CONFIG_FNAME, every version


def check_checkpoint_readable(directory) -> None:
    """Refuse, with both versions named, a dist checkpoint in 0.17+'s layout under 0.16."""
    directory = Path(directory)
    if VERSION[:2] >= (0, 17) or not (directory / DIST_CONFIG).exists():
        return
    if not (directory / COMMON_STATE).exists():
        raise CheckpointVersionError(
            f"{directory} was saved by megatron-core 0.17 or newer (its common state is inside the torch_dist "
            f"files, there is no {COMMON_STATE}); the installed megatron-core {INSTALLED} cannot read it: load "
            "it with megatron-core 0.17-0.19 (requirements/py312.txt)")


def install_safe_common_state(safe_reader, load_common_file) -> dict:
    """Make megatron read a checkpoint's common state and sharded objects without unpickling
    code; returns the keyword arguments `dist_checkpointing.load` needs for it.

    0.16: `load(common_strategy=)` takes a strategy whose load_common reads common.pt and whose
    load_sharded_objects reads the per-object .pt files; ours does both weights-only.
    0.17+: `load` has no common_strategy; `serialization.load_common_state_dict` reads the
    common state either from a legacy common.pt (through `serialization.load_common`, plain
    torch.load) or as one byte item of the torch_dist files (through
    `serialization._get_filesystem_reader`, imported by name there), and sharded objects are
    byte items too. Both names are replaced: byte items go through the safe reader.
    """
    from megatron.core.dist_checkpointing import serialization

    if VERSION[:2] >= (0, 17):
        serialization._get_filesystem_reader = safe_reader
        serialization.load_common = load_common_file
        return {}
    from megatron.core.dist_checkpointing.dict_utils import dict_list_map_inplace
    from megatron.core.dist_checkpointing.mapping import ShardedObject
    from megatron.core.dist_checkpointing.strategies.common import TorchCommonLoadStrategy

    class SafeCommonLoadStrategy(TorchCommonLoadStrategy):
        def load_common(self, checkpoint_dir):
            return load_common_file(checkpoint_dir)

        def load_sharded_objects(self, sharded_objects_state_dict, checkpoint_dir):
            def load_one(sh_obj):
                path = Path(checkpoint_dir) / f"{sh_obj.unique_key}.pt"
                if not path.is_file():
                    raise CheckpointError(f"{checkpoint_dir}: object shard {path.name} is missing")
                from megatron_kanana.checkpointing.safe_load import load_weights_only

                return load_weights_only(path)

            return dict_list_map_inplace(lambda x: load_one(x) if isinstance(x, ShardedObject) else x,
                                         sharded_objects_state_dict)

    return {"common_strategy": SafeCommonLoadStrategy()}
