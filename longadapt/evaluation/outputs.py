"""Files a run leaves next to its run.json, so that a score can be inspected:

``predictions/test.jsonl``
    entity tasks: one line per test document with every predicted mention (character offsets into the
    original text, its text, whether it is correct) and every missed gold mention (with whether the scheme
    could represent it); other tasks: one line per test example (gold, prediction, windows).
``predictions/brat/<doc>.txt`` and ``.ann``
    entity tasks: the predictions as a BRAT folder (the text copied byte for byte, so offsets hold with
    CRLF line ends and any character), readable by ``longadapt``'s own BRAT reader and by brat itself.
``entities.md``
    entity tasks: per split and type, the gold mentions in the data, how many the scheme represents, how
    many were predicted and how many are correct (and why the others cannot be represented).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from longadapt.evaluation import tasktypes
from longadapt.io import atomic_write_text


def count_table(table: dict[str, Any]) -> str:
    """A Markdown table of a split's entity counts (``entities.mention_scores``'s table)."""
    lines = ["| type | gold in data | representable | predicted | correct | P | R | F1 | not representable |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    rows = list(table["per_type"].items()) + [("**all**", table["total"])]
    for lab, t in rows:
        lost = ", ".join(f"{v} {k}" for k, v in t.get("lost", {}).items()) or "-"
        lines.append(f"| {lab} | {t['gold']} | {t['representable']} | {t['predicted']} | {t['correct']} | "
                     f"{100 * t['precision']:.2f} | {100 * t['recall']:.2f} | {100 * t['f1']:.2f} | {lost} |")
    return "\n".join(lines)


def clef_line(scores: dict[str, Any]) -> str:
    """`` (...)``: the CLEF eHealth count of a test score dict (tasks with ``count: clef``; empty otherwise), for
    the log line that gives the main score. ``scores`` holds numbers, or mean/std dicts (a summary)."""
    if "clef_f1" not in scores:
        return ""

    def num(key: str) -> float:
        v = scores[key]
        return float(v["mean"]) if isinstance(v, dict) else float(v)

    counts = "/".join(f"{num(k):g}" for k in ("clef_tp", "clef_fp", "clef_fn"))
    return (f"; CLEF eHealth count (BRATEval: every gold T line one entity): clef_f1 = {num('clef_f1'):.4f} "
            f"(P {num('clef_precision'):.4f}, R {num('clef_recall'):.4f}, TP/FP/FN {counts})")


def clef_table(table: dict[str, Any]) -> str:
    """A Markdown table of the CLEF eHealth count per type (``entities.clef_scores``'s table)."""
    lines = ["| type | TP | FP | FN | P | R | F1 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for lab, t in list(table["per_type"].items()) + [("**all**", table["total"])]:
        lines.append(f"| {lab} | {t['tp']} | {t['fp']} | {t['fn']} | {100 * t['precision']:.2f} | "
                     f"{100 * t['recall']:.2f} | {100 * t['f1']:.2f} |")
    return "\n".join(lines)


def safe_name(doc_id: str) -> str:
    """A document id as a file name (path separators and other odd characters become ``_``)."""
    return re.sub(r"[^\w.+-]", "_", doc_id) or "_"


def _brat_text(s: str) -> str:
    return s.replace("\r", " ").replace("\n", " ").replace("\t", " ")


def write_brat(folder: Path, doc_id: str, text: str, mentions: list[dict[str, Any]]) -> None:
    """``<doc_id>.txt`` (byte-exact) and ``<doc_id>.ann`` with one ``T`` line per mention."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{doc_id}.txt", text)
    lines = [f"T{k}\t{m['label']} {m['start']} {m['end']}\t{_brat_text(text[m['start']:m['end']])}"
             for k, m in enumerate(mentions, start=1)]
    atomic_write_text(folder / f"{doc_id}.ann", "".join(line + "\n" for line in lines))


def write_predictions(run_dir: Path, result: Any, task: Any, data: Any) -> None:
    """The test outputs of ``result`` (a RunResult) under ``run_dir`` (the run's temporary directory)."""
    folder = Path(run_dir) / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    if tasktypes.get(task.type).entities and result.predictions:
        gold = data.gold["test"]
        rep = data.representable["test"]
        for doc in result.predictions:
            d = doc["id"]
            pred = {(m["start"], m["end"], m["label"]) for m in doc["mentions"]}
            text = doc["text"]
            mentions = [{**m, "correct": (m["start"], m["end"], m["label"]) in gold[d]} for m in doc["mentions"]]
            missed = [{"start": s, "end": e, "label": lab, "text": text[s:e], "representable": (s, e, lab) in rep[d]}
                      for s, e, lab in sorted(gold[d] - pred)]
            rows.append({"id": d, "mentions": mentions, "missed": missed})
            if task.document_task:  # sentence tasks: the JSON Lines only (thousands of one-line files otherwise)
                write_brat(folder / "brat", safe_name(d), text, doc["mentions"])
        tables = ["# Entities per split and type", "",
                  f"Scheme: {result.entities['scheme']['scheme']} (nested: {result.entities['nested']}), "
                  f"discontinuous: {result.entities['discontinuous']}. Gold in data = every gold mention of the split "
                  "(what f1, precision and recall count); representable = what the scheme can encode and decode back exactly.",
                  ""]
        tables += ["| split | documents | annotations read | discontinuous | duplicates (counted once) | trimmed spans | "
                   "left out (other_labels) |", "|---|---:|---:|---:|---:|---:|---|"]
        for split in ("train", "dev", "test"):
            d = result.data.get(split, {})
            ignored = ", ".join(f"{k} {v}" for k, v in d.get("ignored_labels", {}).items()) or "-"
            tables.append(f"| {split} | {d.get('documents')} | {d.get('annotations')} | {d.get('discontinuous')} | "
                          f"{d.get('duplicates')} | {d.get('trimmed')} | {ignored} |")
        tables.append("")
        for split in ("train", "dev", "test"):
            t = result.entities.get(split)
            if t:
                tables += [f"## {split}" + (" (predicted and correct: the selected model)" if split != "train" else ""),
                           "", count_table(t), ""]
                if t.get("clef"):
                    intro = (f"CLEF eHealth count of {split} (count: clef; BRATEval's rule: every gold T line is one "
                             "entity, duplicates included, a discontinuous one matched only by a prediction with all "
                             "its fragments):")
                    tables += [intro, "", clef_table(t["clef"]), ""]
        atomic_write_text(Path(run_dir) / "entities.md", "\n".join(tables))
    else:
        rows = list(result.per_example)
    atomic_write_text(folder / "test.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
