"""The single command-line entry point: ``longadapt <command> ...``.

Each command lives in the subpackage that owns it (``longadapt/<pkg>/cli.py``) and exposes
``add_arguments_<name>(parser)`` and ``run_<name>(args) -> int``. This module only dispatches,
so that subpackages stay importable from notebooks without any argument parsing.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys

from longadapt.errors import LongAdaptError

# command -> (module, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "import": ("longadapt.interop.cli", "import a BERT-family / ModernBERT checkpoint into the core (optionally made long)"),
    "export": ("longadapt.interop.cli", "export a core checkpoint to a stock transformers format"),
    "bench": ("longadapt.bench.cli", "benchmarks (encoder speed and memory)"),
    "vocab": ("longadapt.vocab.cli", "per-language tokenizer analysis"),
    "pretrain": ("longadapt.training.cli", "masked-LM pretraining from a YAML config"),
    "adapt": ("longadapt.recipes.cli", "run an adaptation recipe (convert | continue | scratch)"),
    "plan": ("longadapt.recipes.cli", "the cost of a recipe before it runs: tokens, FLOPs, GPU-hours, memory per GPU"),
    "evaluate": ("longadapt.evaluation.cli", "fine-tune and evaluate models on tasks"),
    "compare": ("longadapt.evaluation.cli", "compare evaluation results in a report"),
    "predict": ("longadapt.evaluation.cli", "annotate new documents with a fine-tuned model"),
    "study": ("longadapt.study.cli", "run a whole study (adaptations x tasks x seeds, rate search) and its verdict report"),
    "cache": ("longadapt.cache", "list or clear the cache of tokenized and packed corpora (LONGADAPT_CACHE)"),
}

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.\-]*=")  # key.sub=value

# commands whose output (--out, or import's OUT) is a folder: an existing file there is refused before any work
# (compare's --out is the report file itself)
FOLDER_OUTPUTS = ("import", "export", "vocab", "adapt", "evaluate", "predict", "study")

# commands that run through accelerate, and so may be started by `accelerate launch` (predict shards documents)
TRAINING_COMMANDS = ("pretrain", "adapt", "predict", "study")


def _load(command: str):
    module_name, _ = COMMANDS[command]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command is listed; only the module of ``command`` is imported (for its options), so a
    command never depends on the other subpackages importing cleanly."""
    parser = argparse.ArgumentParser(prog="longadapt", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.command_parsers = {}  # type: ignore[attr-defined]  # a command's own errors print its own usage
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        parser.command_parsers[name] = p  # type: ignore[attr-defined]
        if name == command:
            module = _load(name)
            if module is None or not hasattr(module, f"add_arguments_{name}"):
                raise SystemExit(f"longadapt {name}: this command is not available in this version")
            getattr(module, f"add_arguments_{name}")(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may stand anywhere after the command (argparse takes a positional list only in
    # one block, so `adapt continue --language fr continue.vocab_arm=replace` would be refused)
    if extra and hasattr(args, "overrides") and all(_OVERRIDE.match(x) for x in extra):
        args.overrides = list(args.overrides or []) + extra
    elif extra:
        parser.command_parsers.get(args.command, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.command:
        parser.print_help()
        return 1
    if args.command in FOLDER_OUTPUTS:
        for name in ("out", "dest"):
            value = getattr(args, name, None)
            if value and os.path.exists(value) and not os.path.isdir(value):
                print(f"longadapt {args.command}: error: {'--out' if name == 'out' and args.command != 'import' else name.upper()} "
                      f"{value} is a file; the output is a folder: give a new or existing folder", file=sys.stderr)
                return 2
    if args.command in TRAINING_COMMANDS:
        from longadapt.launch import relaunch_cpu_workers, requested_cpu_processes

        n = requested_cpu_processes()
        if n > 1:  # accelerate launch --cpu --num_processes N without mpirun: start the N workers here
            return relaunch_cpu_workers(n, argv)
    module = _load(args.command)
    try:
        return int(getattr(module, f"run_{args.command}")(args) or 0)
    except LongAdaptError as exc:
        print(f"longadapt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
