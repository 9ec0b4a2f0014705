"""Kill-and-resume sweep: SIGKILL `longadapt pretrain` at many points, resume, and check that the final
weights equal an uninterrupted run's and that no temporary is left. The suite tests one point of each
kind (tests/test_training_resume.py, test_recipes.py, test_eval_cli.py, test_faults.py); this walks
them all, plus kills at random wall-clock times.

    python benchmarks/fault_sweep.py                       # every fault point x several occurrences + 5 random kills
    python benchmarks/fault_sweep.py --random 20 --json benchmarks/results/fault_sweep.json

The run is recipes/pretrain/fr-tiny.yaml shrunk to seconds by overrides (40 steps, a checkpoint every
5, 256-token rows). Each case: a fresh output folder, a run killed by LONGADAPT_FAULT=POINT@N (a real
SIGKILL of the process at that point, see longadapt/faults.py) or by a timer, then `--resume` until it
completes (a kill before the first checkpoint restarts from step 0). Prints one line per case and a
summary, writes JSON; exits 1 when any case differs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "pretrain" / "fr-tiny.yaml"
OVERRIDES = ["steps=40", "save_every=5", "keep_last=2", "eval_every=20", "log_every=5", "max_length=256",
             "tokens_per_step=512", "micro_batch_size=1", "data.max_documents=40", "data.max_validation_rows=4",
             "tensorboard=false", "schedule.warmup_steps=5"]
# (a pretrain run never replaces an existing folder, so "replace" is left to the evaluation test)
POINTS = [("checkpoint-write", (1, 3, 6)), ("checkpoint-saved", (1, 4, 7)), ("rename", (1, 2, 5))]


def _env(cache: Path, fault: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "LONGADAPT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    env.pop("LONGADAPT_FAULT", None)
    if fault:
        env["LONGADAPT_FAULT"] = fault
    return env


def _pretrain(out: Path, cache: Path, *extra: str, fault: str | None = None, kill_after: float | None = None):
    cmd = [sys.executable, "-m", "longadapt", "pretrain", str(RECIPE), *OVERRIDES, f"output_dir={out}", *extra]
    proc = subprocess.Popen(cmd, env=_env(cache, fault), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=900)
    return proc.returncode, err


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _max_diff(a: dict, b: dict) -> float:
    if a.keys() != b.keys():
        return float("inf")
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def run_case(name: str, root: Path, cache: Path, reference: dict, fault: str | None, kill_after: float | None) -> dict:
    out = root / name
    t0 = time.perf_counter()
    rc, err = _pretrain(out, cache, fault=fault, kill_after=kill_after)
    killed = rc == -signal.SIGKILL
    resumes = 0
    while not (out / "model" / "model.safetensors").is_file() and resumes < 3:
        rc, err = _pretrain(out, cache, "--resume")
        resumes += 1
    done = (out / "model" / "model.safetensors").is_file()
    diff = _max_diff(reference, _weights(out / "model")) if done else float("inf")
    leftovers = [str(p.relative_to(out)) for p in out.rglob(".*.tmp-*")] + \
                [str(p.relative_to(out)) for p in out.rglob(".longadapt-writer")]
    ok = done and diff <= 1e-5 and not leftovers
    return {"case": name, "fault": fault, "kill_after_s": kill_after, "killed": killed, "resumes": resumes,
            "completed": done, "max_weight_diff": diff, "leftover_temporaries": leftovers, "ok": ok,
            "seconds": round(time.perf_counter() - t0, 1), "last_stderr": "" if ok else err[-1500:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random", type=int, default=5, help="kills at random wall-clock times")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="longadapt-fault-sweep-"))
    cache = root / "cache"
    t0 = time.perf_counter()
    rc, err = _pretrain(root / "reference", cache)
    if rc != 0:
        print(err[-3000:], file=sys.stderr)
        return 1
    uninterrupted_s = time.perf_counter() - t0
    reference = _weights(root / "reference" / "model")
    cases = [(f"{point}@{n}", f"{point}@{n}", None) for point, ns in POINTS for n in ns]
    rng = random.Random(args.seed)
    # the reference run also built the cache; a later run takes about 2/3 of its time: kill within that
    cases += [(f"timer-{i}", None, round(rng.uniform(2.0, max(3.0, 0.6 * uninterrupted_s)), 2))
              for i in range(args.random)]
    results = []
    for name, fault, after in cases:
        r = run_case(name.replace("@", "-"), root, cache, reference, fault, after)
        results.append(r)
        print(f"{name:22s} killed={r['killed']!s:5s} resumes={r['resumes']} diff={r['max_weight_diff']:.2e} "
              f"leftovers={len(r['leftover_temporaries'])} {'ok' if r['ok'] else 'FAILED'} ({r['seconds']} s)",
              flush=True)
    bad = [r for r in results if not r["ok"]]
    print(f"{len(results) - len(bad)} of {len(results)} cases equal the uninterrupted run (weights within 1e-5, "
          f"no temporary left); {sum(r['killed'] for r in results)} were killed; the uninterrupted run took "
          f"{uninterrupted_s:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"uninterrupted_s": uninterrupted_s, "cases": results}, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
