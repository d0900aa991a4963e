"""The Dockerfile cannot be built on the CPU dev box; these checks keep its promises:
a pinned NVIDIA base, this package installed, the image's torch never replaced, `kanana`
as the entry point, and a build context without venvs, runs or git history."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with backslash continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    out = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def pip_installs() -> list[list[str]]:
    """The argument lists of every `pip install` in a RUN step."""
    found = []
    for keyword, args in instructions():
        if keyword != "RUN":
            continue
        for command in args.split("&&"):
            if "pip install" not in command:
                continue
            words = shlex.split(command)
            for i in range(len(words) - 1):
                if words[i].endswith("pip") and words[i + 1] == "install":
                    found.append(words[i + 2:])
    return found


def test_base_image_is_a_pinned_nvidia_pytorch_release():
    bases = [args.split()[0] for keyword, args in instructions() if keyword == "FROM"]
    assert len(bases) == 1, bases
    image, _, tag = bases[0].partition(":")
    assert image == "nvcr.io/nvidia/pytorch"
    assert tag and tag != "latest" and "@" not in image
    assert re.fullmatch(r"\d{2}\.\d{2}-py3", tag), f"tag {tag!r} is not a dated release like 25.04-py3"


def test_installs_this_package_without_touching_torch():
    installs = pip_installs()
    assert any("-e" in args and "." in args and "--no-deps" in args for args in installs), installs
    packages = [w for args in installs for w in args if not w.startswith("-")]
    names = [re.split(r"[<>=!~\[ ]", p)[0].lower() for p in packages]
    assert "torch" not in names and "pytorch" not in names, "the image's torch must not be replaced"
    newest = next(line for line in (REPO / "requirements" / "py312.txt").read_text().splitlines()
                  if line.startswith("megatron-core=="))
    assert newest in packages, f"the image should carry the newest tested megatron-core ({newest})"
    megatron = next(args for args in installs if newest in args)
    assert "--no-deps" in megatron, "megatron-core's `torch>=2.6.0` must not pull a PyPI torch"
    for needed in ("sentencepiece", "tokenizers", "safetensors", "pyyaml", "zstandard", "psutil",
                   "wandb", "tensorboard", "matplotlib", "py3langid"):
        assert needed in names, f"{needed} is not installed"


def test_entry_point_is_the_kanana_command():
    entry = [args for keyword, args in instructions() if keyword == "ENTRYPOINT"]
    assert len(entry) == 1
    assert json.loads(entry[0]) == ["kanana"]
    setup = (REPO / "setup.py").read_text()
    assert "kanana=megatron_kanana.cli:main" in setup


def test_dockerignore_keeps_the_context_small():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "runs", "demo_out"} <= ignored
