"""`python -m ecgssl_nb COMMAND ...`: fixture, download, prepare, pretrain, finetune, reproduce, verify.

Each command lives in its own module as `cli(argv) -> int`; this file only dispatches and turns
a `UserError` into a one-line message and exit status 2, and a write the system refused
(`atomic.WriteError`: a full disk, a file-size limit) into one naming the file, status 1.
"""

from __future__ import annotations

import importlib
import sys

from .atomic import WriteError
from .core.errors import UserError

COMMANDS = {
    "fixture": ("ecgssl_nb.data.fixture", "write the synthetic tiny corpus in the Challenge on-disk format"),
    "download": ("ecgssl_nb.data.download", "download the PhysioNet/CinC 2020 training data (6 sources)"),
    "prepare": ("ecgssl_nb.data.prepare", "records -> 100 Hz memmap, index, stats and folds"),
    "pretrain": ("ecgssl_nb.stages.pretrain", "self-distillation pre-training of one backbone"),
    "finetune": ("ecgssl_nb.stages.finetune", "fine-tune one setup on one fold and evaluate it"),
    "reproduce": ("ecgssl_nb.study.reproduce", "run the whole study and write the tables"),
    "verify": ("ecgssl_nb.provenance", "hash every recorded output below a folder against its digests.json"),
}


def _usage() -> str:
    lines = ["usage: python -m ecgssl_nb COMMAND [options]   (COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.cli(rest) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except WriteError as exc:  # a full disk, a file-size limit: the file and the cause
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
