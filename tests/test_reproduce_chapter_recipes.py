"""The Reproduce chapter's recipes are the tested ones: every `reproduce` command it shows parses
with the command's own arguments, and its SLURM recipe is the script in the repository with the
settings that script reads (the script itself runs in tests/test_study_on_slurm.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ecgssl_nb.study import reproduce

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = (ROOT / "book" / "reproduce.md").read_text()
SCRIPT = ROOT / "cluster" / "slurm_ray.sbatch"


def _commands(prefix: str) -> list[list[str]]:
    """The shell commands of the chapter's code blocks that start with `prefix` (continuation
    lines joined), as words."""
    blocks = re.findall(r"```bash\n(.*?)```", CHAPTER, flags=re.S)
    lines = [ln.strip() for b in blocks for ln in b.replace("\\\n", " ").splitlines()]
    return [shlex.split(ln) for ln in lines if prefix in ln]


def test_every_reproduce_command_in_the_chapter_parses_with_the_reproduce_arguments():
    cmds = _commands("-m ecgssl_nb reproduce")
    assert len(cmds) >= 4
    for words in cmds:
        args = words[words.index("reproduce") + 1 :]
        reproduce._parser().parse_args(args)  # SystemExit (a failed test) for a flag it does not have


def test_the_chapter_shows_the_multi_gpu_flags_the_ray_runner_has():
    flags = {w for words in _commands("-m ecgssl_nb reproduce") for w in words if w.startswith("--")}
    assert {"--devices", "--gpus-per-pretrain", "--runs-per-device"} <= flags


def test_the_slurm_recipe_submits_the_repository_script_with_the_settings_it_reads():
    (sbatch,) = [w for w in _commands("sbatch ") if "cluster/slurm_ray.sbatch" in w]
    assert SCRIPT.is_file() and SCRIPT.stat().st_mode & 0o111
    text = SCRIPT.read_text()
    section = CHAPTER[CHAPTER.index("## 6. A cluster") : CHAPTER.index("## 7.")]
    named = set(re.findall(r"\b(ECGSSL_[A-Z]+|RAY_[A-Z]+)\b", section)) - {"RAY_ADDRESS"}  # (read by reproduce)
    assert named and all(name in text for name in named), sorted(n for n in named if n not in text)
    assert "reproduce" in text and "--address" in text
