"""Outputs of the vocabulary analysis: metrics.csv, pairs.csv, metrics.json, report.md and plots.

Everything is written into a temporary directory that replaces ``out_dir`` only when complete.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any, Sequence

from longadapt.io import atomic_dir, atomic_write_json, atomic_write_text
from longadapt.vocab.analysis import VocabAnalysis
from longadapt.vocab.metrics import PROTOCOL

logger = logging.getLogger(__name__)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value.is_integer() and abs(value) >= 10:
            return f"{value:,.0f}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        if 0 < abs(value) < 0.01:
            return f"{value:.2g}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def side_by_side(result: VocabAnalysis, metric: str) -> list[dict[str, Any]]:
    """One row per tokenizer, one column per language, for ``metric``."""
    out: dict[str, dict[str, Any]] = {}
    for r in result.rows:
        out.setdefault(r["tokenizer"], {"tokenizer": r["tokenizer"]})[r["language"]] = r.get(metric)
    return [out[k] for k in out]


def render_markdown(result: VocabAnalysis, plots: Sequence[str] = ()) -> str:
    cfg = result.config
    langs = cfg["languages"]
    L = cfg["max_lengths"]
    parts = [
        "# Vocabulary analysis",
        "",
        f"Languages: {', '.join(langs)}. Tokenizers: {', '.join(t['name'] for t in result.tokenizers)}."
        + (f" First {cfg['max_docs']} documents of each corpus." if cfg.get("max_docs") else ""),
        "",
    ]
    flagged = [t for t in result.tokenizers if t["lowercases"] or t["strips_accents"]]
    for t in flagged:
        what = " and ".join(x for x, f in (("lower-cases", t["lowercases"]), ("strips accents", t["strips_accents"])) if f)
        parts.append(
            f"> **Warning: {t['name']} {what}**: `{t['probe']}` comes back as `{t['decoded']}`. "
            "French/German/Spanish distinctions carried by accents and capitals are lost "
            "(e.g. *côte/cote/côté*, *Arm/arm*)."
        )
        parts.append("")

    parts += ["## Corpora", ""]
    parts.append(markdown_table(result.corpora, ["language", "path", "docs", "words", "word_types", "characters"]))
    parts += ["", "## Tokenizers", ""]
    parts.append(
        markdown_table(
            result.tokenizers,
            ["name", "source", "scheme", "vocab_size", "unk_token", "byte_fallback", "lowercases", "strips_accents", "decoded"],
            ["name", "source", "scheme", "vocab", "unk", "byte fallback", "lower-cases", "strips accents", "probe decoded"],
        )
    )
    if len(langs) > 1:
        parts += ["", "## Side by side", ""]
        for metric, title in (("fertility", "Fertility (pieces per word)"), ("continued_words", "Continued words (>= 2 pieces)"),
                              ("chars_per_token", "Characters per token"), (f"docs_longer@{L[0]}" if L else "renyi_efficiency",
                              f"Documents longer than {L[0]} tokens" if L else "Rényi efficiency")):
            parts += [f"### {title}", "", markdown_table(side_by_side(result, metric), ["tokenizer", *langs]), ""]

    parts += ["", "## Metrics per language and tokenizer", ""]
    cols = ["language", "tokenizer", "fertility", "continued_words", "unk_words", "byte_fallback_pieces",
            "chars_per_token", "renyi_efficiency", "vocab_used"]
    parts.append(markdown_table(result.rows, cols, ["lang", "tokenizer", "fertility", "continued", "UNK words", "byte pieces",
                                                   "chars/token", f"Rényi eff. (α={cfg['alpha']})", "vocab used"]))
    parts += ["", "### Context", ""]
    ctx_cols = ["language", "tokenizer", "median_doc_tokens"]
    ctx_heads = ["lang", "tokenizer", "median doc tokens"]
    for n in L:
        ctx_cols += [f"effective_context_words@{n}", f"docs_longer@{n}"]
        ctx_heads += [f"words in {n} tokens", f"docs > {n} tokens"]
    parts.append(markdown_table(result.rows, ctx_cols, ctx_heads))
    if any(r.get("terms") for r in result.rows):
        parts += ["", "### Domain terms", ""]
        parts.append(markdown_table([r for r in result.rows if r.get("terms")], ["language", "tokenizer", "terms", "term_whole", "term_pieces"],
                                    ["lang", "tokenizer", "terms", "kept whole", "pieces per term"]))
    if result.pairs:
        parts += ["", "## Vocabulary overlap (canonical word-start markers)", ""]
        parts.append(markdown_table(result.pairs, ["language", "tokenizer_a", "tokenizer_b", "vocab_a", "vocab_b", "shared",
                                                   "jaccard", "weighted_a_in_b", "weighted_b_in_a"],
                                    ["lang", "A", "B", "size A", "size B", "shared", "Jaccard", "A tokens in B", "B tokens in A"]))
    ex_rows = []
    for lang, words in result.examples.items():
        for word, segs in words.items():
            ex_rows.append({"language": lang, "word": word, **segs})
    if ex_rows:
        names = [t["name"] for t in result.tokenizers]
        parts += ["", "## Example segmentations", "", "Pieces in canonical form: \u2581 marks a word-initial piece.", ""]
        parts.append(markdown_table(ex_rows, ["language", "word", *names]))
    if plots:
        parts += ["", "## Plots", ""]
        parts += [f"![{p}]({p})" for p in plots]
    parts += ["", "## Protocol", "", PROTOCOL]
    return "\n".join(parts) + "\n"


def plot_fertility(result: VocabAnalysis, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    langs = result.config["languages"]
    names = [t["name"] for t in result.tokenizers]
    width = 0.8 / max(len(langs), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(names) * max(1, len(langs)) ** 0.5 + 2), 3.8))
    x = np.arange(len(names))
    for k, lang in enumerate(langs):
        vals = [result.row(lang, n)["fertility"] for n in names]
        bars = ax.bar(x + (k - (len(langs) - 1) / 2) * width, vals, width, label=lang)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("pieces per word (fertility)")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_title("Fertility per tokenizer and language")
    ax.legend(title="language", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_doc_lengths(result: VocabAnalysis, language: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lengths = result.doc_lengths[language]
    all_vals = np.concatenate([np.asarray(v, dtype=float) for v in lengths.values()])
    lo, hi = max(1.0, all_vals.min()), max(2.0, all_vals.max(), *result.config["max_lengths"])
    bins = np.logspace(np.log10(lo), np.log10(hi * 1.05), 40)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    first = result.config["max_lengths"][0] if result.config["max_lengths"] else None
    for name, vals in lengths.items():
        label = name
        if first is not None:
            label += f" ({result.row(language, name)[f'docs_longer@{first}']:.0%} > {first})"
        ax.hist(vals, bins=bins, histtype="step", lw=1.5, label=label)
    for L in result.config["max_lengths"]:
        ax.axvline(L, color="black", ls="--", lw=1)
        ax.text(L, ax.get_ylim()[1] * 0.95, f" {L}", va="top", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("document length in tokens (log scale)")
    ax.set_ylabel("documents")
    ax.set_title(f"Document lengths ({language}) against the length limits")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: VocabAnalysis, out_dir: str | Path, plots: bool = True) -> Path:
    """Write metrics.csv, pairs.csv (two tokenizers or more), metrics.json, report.md and PNG plots into
    ``out_dir`` atomically."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        atomic_write_text(tmp / "metrics.csv", csv_text(result.rows))
        if result.pairs:  # pairs need two tokenizers: with one there is no file rather than an empty one
            atomic_write_text(tmp / "pairs.csv", csv_text(result.pairs))
        atomic_write_json(tmp / "metrics.json", result.to_json())
        names: list[str] = []
        if plots:
            plot_fertility(result, tmp / "fertility.png")
            names.append("fertility.png")
            for lang in result.config["languages"]:
                plot_doc_lengths(result, lang, tmp / f"doc_lengths_{lang}.png")
                names.append(f"doc_lengths_{lang}.png")
        atomic_write_text(tmp / "report.md", render_markdown(result, names))
    logger.info("wrote %s", out_dir)
    return out_dir
