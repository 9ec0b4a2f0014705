"""``longadapt vocab``: per-language tokenizer analysis from the command line."""

from __future__ import annotations

import argparse
import logging

from longadapt.errors import LongAdaptError

logger = logging.getLogger(__name__)


def add_arguments_vocab(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--language", required=True,
                        help="language code(s), comma-separated for a side-by-side table: fr or fr,de,es")
    parser.add_argument("--corpus", action="append", default=[], metavar="PATH",
                        help="corpus per language, in the order of --language (.jsonl(.gz) with a text field, "
                             ".txt(.gz) one document per line, or a directory of .txt files); repeatable")
    parser.add_argument("--tokenizer", action="append", default=[], required=True, metavar="SRC",
                        help="tokenizer or model directory, tokenizer.json, or hub id; NAME=SRC sets the label; repeatable")
    parser.add_argument("--terms", action="append", default=[], metavar="FILE",
                        help="domain terms per language, in the order of --language: one term per line, BRAT .ann "
                             "file/directory or IOB file; '-' for none; repeatable")
    parser.add_argument("--terms-format", default="auto", choices=["auto", "lines", "brat", "iob"])
    parser.add_argument("--max-length", action="append", type=int, default=[], metavar="N",
                        help="length limit(s) in tokens for effective context and long-document shares "
                             "(repeatable; default 512 and 4096)")
    parser.add_argument("--max-docs", type=int, default=None, help="analyse only the first N documents of each corpus")
    parser.add_argument("--alpha", type=float, default=2.5, help="order of the Rényi efficiency (default 2.5)")
    parser.add_argument("--text-field", default="text", help="JSON field holding the text (default: text)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (replaced atomically)")


def _default_corpora(languages: list[str]) -> list[str]:
    """The language packs' first local corpus under the data root ($LONGADAPT_DATA, else ../shared/data)."""
    from longadapt.dataroot import data_root
    from longadapt.languages import load_language

    root = data_root()
    if root is None:
        raise LongAdaptError("no --corpus given and no data root: set LONGADAPT_DATA or pass --corpus PATH")
    out = []
    for code in languages:
        pack = load_language(code)
        paths = [c.path for c in pack.corpora if c.path]
        if not paths:
            raise LongAdaptError(f"no --corpus given and languages/{code}.yaml names no local corpus: pass --corpus PATH")
        out.append(str(root / paths[0]))
    return out


def run_vocab(args: argparse.Namespace) -> int:
    from longadapt.vocab.analysis import VocabConfig, analyze_config
    from longadapt.vocab.report import write_outputs

    languages = [c.strip() for c in args.language.split(",") if c.strip()]
    corpora = args.corpus or _default_corpora(languages)
    if args.max_docs is not None and args.max_docs <= 0:
        raise LongAdaptError(f"--max-docs must be positive, got {args.max_docs}")
    cfg = VocabConfig(
        languages=languages,
        corpora=corpora,
        tokenizers=args.tokenizer,
        terms=args.terms,
        terms_format=args.terms_format,
        max_lengths=args.max_length or [512, 4096],
        alpha=args.alpha,
        max_docs=args.max_docs,
        text_field=args.text_field,
        progress=not args.no_progress,
    )
    result = analyze_config(cfg)
    out = write_outputs(result, args.out, plots=not args.no_plots)
    for r in result.rows:
        logger.info("%s %-24s fertility %.3f  chars/token %.2f  Rényi %.3f", r["language"], r["tokenizer"],
                    r["fertility"], r["chars_per_token"], r["renyi_efficiency"])
    tables = [n for n in ("report.md", "metrics.csv", "metrics.json", "pairs.csv") if (out / n).is_file()]
    print(f"wrote {out}/{', '.join(tables)}")
    return 0
