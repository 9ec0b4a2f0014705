"""``longadapt study``: the study file is checked before any compute, a tiny study runs end to end in
shards, a killed study resumes and writes the same report, and a failed stage does not stop the others."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_STUDY, run_study_cli, write_tiny_study
from longadapt.errors import LongAdaptError


def _write(folder: Path, study: str, minilm: Path) -> Path:
    path = write_tiny_study(folder, minilm)
    path.write_text(study, encoding="utf-8")
    return path


@pytest.mark.parametrize("edit, message", [
    (("strategy: scratch\n", ""), None),  # control: the tiny study itself loads
    (("    recipe: scratch-smoke.yaml\n", "    strategy: scrach\n"),
     r"study.yaml:6 \(adaptations.0.strategy\): unknown strategy 'scrach' \(did you mean 'scratch'\?\)"),
    (("    recipe: scratch-smoke.yaml\n", "    strategy: continue\n    arm: extnd\n"),
     r"study.yaml:7 \(adaptations.0.arm\): .*vocab_arm must be keep, replace or extend.* \(did you mean 'extend'\?\)"),
    (("tasks: [fr-e3c-ner-doc]", "tasks: [fr-e3c-ner-dok]"),
     r"study.yaml:11 \(tasks.0\): unknown task 'fr-e3c-ner-dok' \(did you mean 'fr-e3c-ner-doc'\?\)"),
    (("  reference: bert", "  reference: bart"),
     r"study.yaml:\d+ \(report.reference\): 'bart' is not a baseline of this study \(did you mean 'bert'\?\)"),
    (("budgets: [2048, 4096]", "budgets: [2048, 3000]"),
     r"study.yaml:7 \(adaptations.0.budgets\): 3,000 tokens is not a whole number of steps .*use a multiple of 1,024"),
    (("  method: grid\n  learning_rates: [1.0e-3, 3.0e-3]", "  method: tpe\n  range: [5.0e-4, 5.0e-5]\n  trials: 2"),
     r"study.yaml:\d+ \(search.range\): range is \[low, high\] with low < high.*write \[5e-05, 0.0005\]"),
    (("  method: grid", "  method: grib"),
     r"study.yaml:\d+ \(search.method\): method must be one of grid, tpe, none \(did you mean 'grid'\?\)"),
    (("seeds: 2", "seeds: 2\nsead: 3"), r"study.yaml:13 \(sead\): unknown key 'sead' \(did you mean 'seeds'\?\); valid keys: adapt_overrides, adaptations, baselines, curve_tasks, data_root, finetune, language, limits, name, out, report, search, seeds, tasks$"),
    (("    budgets: [2048, 4096]\n", "    budgets: [2048, 4096]\n    learning_rates: [1.0e-3, -1]\n"),
     r"study.yaml:8 \(adaptations.0.learning_rates\): a learning rate is a positive number \(e.g. 2e-4\), not -1"),
    (("    model: tiny-bert\n", "    model: tiny-bert\n    learning_rates: [1.0e-3, 1.0e-3]\n"),
     r"study.yaml:\d+ \(baselines.0.learning_rates\): a learning rate is listed twice"),
    (("finetune: {epochs: 1, learning_rate: 1.0e-3}", "finetune: {epoch: 1}"),
     r"unknown key 'training.epoch' \(did you mean 'training.epochs'\?\)"),
])
def test_a_bad_study_file_is_refused_before_any_compute_with_its_line(edit, message, tmp_path, minilm_dir, shared_data):
    from longadapt.study.spec import load_study

    old, new = edit
    assert old in TINY_STUDY or old == "strategy: scratch\n"
    path = _write(tmp_path, TINY_STUDY.replace(old, new), minilm_dir)
    if message is None:
        spec = load_study(path)
        assert sorted(spec.recipes) == ["scratch-2048", "scratch-4096"]
        assert [p["steps"] for p in spec.recipes["scratch-4096"][2]["phases"]] == [4]
        return
    with pytest.raises(LongAdaptError, match=message):
        load_study(path)
    assert not (tmp_path / "out").exists()  # nothing was computed or written


def test_a_model_with_its_own_grid_gets_its_own_trials_and_only_in_a_grid_search(tmp_path, minilm_dir, shared_data):
    from longadapt.study.plan import build_plan, describe
    from longadapt.study.spec import load_study

    own = TINY_STUDY.replace("    model: tiny-bert\n", "    model: tiny-bert\n    learning_rates: [2.0e-4]\n")
    plan = build_plan(load_study(_write(tmp_path, own, minilm_dir)))
    bert = plan.trials_of("fr-e3c-ner-doc", "bert")
    assert [describe(plan, st).split(",")[0] for st in bert] == ["lr 0.0002"]
    # a grid trial is named by its rate: another study file with another grid shares it, never overwrites it
    assert [st.id for st in bert] == ["trial/fr-e3c-ner-doc/bert/lr-0.0002"]
    assert [describe(plan, st).split(",")[0] for st in plan.trials_of("fr-e3c-ner-doc", "scratch-4096")] == [
        "lr 0.001", "lr 0.003"]  # the search's grid
    assert all(st.deps[-1] == bert[0].id for st in plan.stages.values() if st.kind == "seed" and st.model == "bert")
    tpe = own.replace("  method: grid\n  learning_rates: [1.0e-3, 3.0e-3]", "  method: tpe\n  range: [1.0e-4, 1.0e-2]\n  trials: 2")
    with pytest.raises(LongAdaptError, match=r"study.yaml:11 \(baselines.0.learning_rates\): a model's own "
                       r"learning_rates are a grid; set search.method: grid, or remove baselines.0.learning_rates"):
        load_study(_write(tmp_path / "tpe", tpe, minilm_dir))


def test_budgets_scale_every_phase_or_name_the_multiple_to_write():
    from longadapt.study.spec import scale_to_budget

    scratch = {"phases": [{"name": "short", "max_length": 512, "steps": 32},
                          {"name": "extend", "max_length": 4096, "steps": 8, "tokens_per_step": 8192}],
               "train": {"tokens_per_step": 2048}}  # 32 x 2,048 + 8 x 8,192 = 131,072 tokens
    four = scale_to_budget(scratch, 4 * 131072, "study.yaml:9", "recipes/scratch/tiny.yaml")
    assert [p["steps"] for p in four["phases"]] == [128, 32] and four["token_budget"] == 524288
    quarter = scale_to_budget(scratch, 32768, "study.yaml:9", "recipes/scratch/tiny.yaml")
    assert [p["steps"] for p in quarter["phases"]] == [8, 2]  # the phases keep their shares
    assert [p["steps"] for p in scratch["phases"]] == [32, 8]  # the recipe itself is left alone
    with pytest.raises(LongAdaptError, match=r"study.yaml:9: 100,000 tokens is not a whole number of steps of "
                       r"recipes/scratch/tiny.yaml's phases \(32 x 2,048 \+ 8 x 8,192 = 131,072 tokens\); use a "
                       r"multiple of 16,384 tokens \(e.g. 98,304\)"):
        scale_to_budget(scratch, 100000, "study.yaml:9", "recipes/scratch/tiny.yaml")


def _report(study: Path) -> dict:
    """report.json without what a re-run may change: the measured times of runs that ran again, and paths."""
    data = json.loads((study.parent / "out" / "report" / "report.json").read_text(encoding="utf-8"))

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "cost" and not re.search(r"seconds|hours|_s$", k)}
        if isinstance(x, list):
            return [strip(v) for v in x]
        if isinstance(x, str):
            return x.replace(str(study.parent), "STUDY")
        return x

    return strip(data)


def test_a_tiny_study_runs_in_two_shards_and_gathers_its_report(tiny_study: Path) -> None:
    out = tiny_study.parent / "out"
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "fr-e3c-ner-doc" in report and "scratch" in report and "bert" in report
    assert (out / "report" / "curve_fr-e3c-ner-doc.png").read_bytes()[:4] == b"\x89PNG"
    # every (model, task) has its two trials and two seeds; seed 0 is the chosen trial's own run
    for model in ("bert", "scratch-2048", "scratch-4096"):
        trials = [json.loads((out / "stages" / f"trial__fr-e3c-ner-doc__{model}__lr-{lr}.json").read_text())
                  for lr in ("0.001", "0.003")]  # a grid trial is named by its rate
        assert [t["lr"] for t in trials] == [1e-3, 3e-3]
        best = max(trials, key=lambda t: (t["value"], -t["lr"]))
        seed0 = json.loads((out / "stages" / f"seed__fr-e3c-ner-doc__{model}__0.json").read_text())
        seed1 = json.loads((out / "stages" / f"seed__fr-e3c-ner-doc__{model}__1.json").read_text())
        assert seed0["lr"] == seed1["lr"] == best["lr"]
        assert seed0["reused"] and seed0["run"] == best["run"] and not seed1["reused"]
    # the searches are Optuna studies in the study folder's storage, one per (task, model)
    import optuna

    names = optuna.get_all_study_names(f"sqlite:///{out / 'search.db'}")
    assert sorted(n.split("/")[2] for n in names) == ["bert", "scratch-2048", "scratch-4096"]
    study = optuna.load_study(study_name=next(n for n in names if "/bert/" in n), storage=f"sqlite:///{out / 'search.db'}")
    assert sorted(t.params["learning_rate"] for t in study.trials) == [1e-3, 3e-3]
    # a dry run now says every stage is done
    dry = run_study_cli(str(tiny_study), "--dry-run").stdout
    assert "14 of 14 stages done, 0 to run" in dry and "| adapt/scratch-4096 | 4,096 tokens (4 x 1,024); scratch | done |" in dry


def test_a_killed_study_resumes_retries_only_its_failures_and_writes_the_same_report(
        tiny_study: Path, tmp_path: Path, minilm_dir: Path) -> None:
    """Run 1: one stage is made to fail (a real SIGKILL of its process) and the whole study is killed at a
    random point; run 2 finishes what can be finished and lists the failure; run 3 retries only the failed
    and blocked stages. Its report equals the sharded run's."""
    study = write_tiny_study(tmp_path / "b", minilm_dir)
    broken = "trial/fr-e3c-ner-doc/scratch-2048/lr-0.003"
    env = {**os.environ, "LONGADAPT_FAULT": f"stage:{broken}"}
    proc = subprocess.Popen([sys.executable, "-m", "longadapt", "study", str(study), "--jobs", "2", "--threads", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    stages = study.parent / "out" / "stages"
    deadline = time.time() + 600
    while proc.poll() is None and not (stages.is_dir() and any(stages.glob("*.json"))) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 15.0))  # a random point after the first finished stage
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    second = run_study_cli(str(study), "--jobs", "2", "--threads", "1", env={"LONGADAPT_FAULT": f"stage:{broken}"},
                           check=False)
    assert second.returncode == 1, second.stderr[-3000:]
    reused = re.search(r"stages to run \((\d+) already done\)", second.stderr)
    assert reused and int(reused.group(1)) >= 1  # the killed run's finished stages were reused
    assert f"FAILED {broken}: exit status -9; log " in second.stderr
    assert "not run seed/fr-e3c-ner-doc/scratch-2048/0: needs trial/fr-e3c-ner-doc/scratch-2048/lr-0.003" in second.stderr
    assert not (study.parent / "out" / "report").exists()  # no report while a stage is missing
    assert (study.parent / "out" / "stages" / "seed__fr-e3c-ner-doc__bert__1.json").is_file()  # the others went on

    third = run_study_cli(str(study), "--jobs", "2", "--threads", "1")
    assert "3 stages to run (11 already done)" in third.stderr
    assert _report(study) == _report(tiny_study)


def test_a_model_with_the_same_weights_as_another_reuses_its_runs(tmp_path: Path, minilm_dir: Path) -> None:
    """Two models of a study with the same weights and settings (offline, convert and continue-keep) have the
    same fine-tuning fingerprint: the second one's run is a copy of the first's, under its own name."""
    study = write_tiny_study(tmp_path, minilm_dir)
    study.write_text(
        "name: twins\nlanguage: fr\nout: out\nbaselines:\n  - {name: bert, model: tiny-bert}\n"
        "  - {name: bert-again, model: tiny-bert}\ntasks: [fr-e3c-ner-doc]\nseeds: 1\n"
        "finetune: {epochs: 1, learning_rate: 1.0e-3}\nlimits: {max_train_docs: 2, max_eval_docs: 2}\n"
        "search: {method: none}\n", encoding="utf-8")
    proc = run_study_cli(str(study), "--jobs", "1", "--threads", "1")
    out = tmp_path / "out"
    first = json.loads((out / "finetune" / "fr-e3c-ner-doc" / "bert" / "lr-0.001" / "seed-0" / "run.json").read_text())
    again = json.loads((out / "finetune" / "fr-e3c-ner-doc" / "bert-again" / "lr-0.001" / "seed-0" / "run.json").read_text())
    assert again["model"]["name"] == "bert-again" and again["model"]["same_run_as"].endswith("bert/lr-0.001/seed-0")
    assert again["score"] == first["score"] and again["fingerprint"]["sha256"] == first["fingerprint"]["sha256"]
    assert "its run is reused" in (out / "logs" / "seed__fr-e3c-ner-doc__bert-again__0.log").read_text()
    assert "every stage is done" in proc.stderr


def _closure(*entries: str) -> set[str]:
    """The longadapt source files reachable from ``entries`` by imports (inside functions too)."""
    import ast

    package = Path(__file__).resolve().parents[1] / "longadapt"

    def module_file(name: str) -> str | None:
        rel = name.split(".", 1)[1].replace(".", "/") if "." in name else ""
        for cand in (f"{rel}.py", f"{rel}/__init__.py"):
            if cand and (package / cand).is_file():
                return cand
        return None

    seen: set[str] = set()
    todo = list(entries)
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        if rel in CANNOT_CHANGE_A_RESULT:
            continue  # not run by what the scope covers (the root's predict() helper): its imports do not count
        for node in ast.walk(ast.parse((package / rel).read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("longadapt"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("longadapt")]
            todo += [f for f in map(module_file, names) if f]
    return seen


# reachable but unable to change a score or a weight: atomic writes and file hashes, kill points, progress
# lines, writing predictions, the fingerprints themselves, and predict (the package root exports it lazily;
# fine-tuning and import never call it)
CANNOT_CHANGE_A_RESULT = {"io.py", "faults.py", "progress.py", "evaluation/outputs.py", "evaluation/predict.py",
                          "evaluation/fingerprint.py"}


def test_the_code_scopes_cover_every_module_their_runs_import() -> None:
    """The code part of a fingerprint hashes the modules a result can depend on: every longadapt module
    reachable by imports from fine-tuning (the ``score`` scope) and from importing and making a model long
    (``import``, a study's baselines) must be in it, or a change there would leave stale runs reused."""
    from longadapt.evaluation.fingerprint import code_files

    score = set(code_files("score"))
    missing = _closure("evaluation/finetune.py", "evaluation/tasks.py", "evaluation/fingerprint.py", "__init__.py")
    assert not sorted(missing - score - CANNOT_CHANGE_A_RESULT), "fine-tuning imports modules outside its scope"
    imported = set(code_files("import"))
    missing = _closure("interop/checkpoints.py", "interop/save.py", "interop/__init__.py", "__init__.py")
    assert not sorted(missing - imported - CANNOT_CHANGE_A_RESULT), "import imports modules outside its scope"
    assert "recipes/adapt.py" not in score | imported and "study/runner.py" not in score
    assert "evaluation/report.py" not in score
    assert "recipes/adapt.py" in code_files("adapt") and "evaluation/finetune.py" not in code_files("adapt")
    assert "progress.py" not in code_files("adapt")  # a progress line cannot change a weight


def test_a_tpe_search_proposes_the_same_rates_when_run_again_and_fails_a_trial_left_running(
        tmp_path: Path, minilm_dir: Path) -> None:
    """TPE trials run in order, each seeded (sampler_seed + slot) and given the trials before it: run again
    from scratch (the same history), the search proposes the same rates. A trial that a killed process left
    RUNNING in the Optuna storage is marked failed when its slot runs again."""
    import optuna
    from optuna.trial import TrialState

    from longadapt.study.plan import build_plan
    from longadapt.study.search import open_storage
    from longadapt.study.spec import load_study
    from longadapt.study.stages import read_record, run_stage, status

    study = write_tiny_study(tmp_path, minilm_dir)
    text = ("name: tpe\nlanguage: fr\nout: out\nbaselines:\n  - {name: bert, model: tiny-bert}\n"
            "tasks: [fr-e3c-ner-doc]\nseeds: 1\nfinetune: {epochs: 1}\nlimits: {max_train_docs: 2, max_eval_docs: 2}\n"
            "search: {method: tpe, range: [1.0e-4, 1.0e-2], trials: 2, startup_trials: 1, sampler_seed: 7}\n")
    study.write_text(text, encoding="utf-8")
    plan = build_plan(load_study(study))
    assert plan.stages["trial/fr-e3c-ner-doc/bert/1"].deps == ["trial/fr-e3c-ner-doc/bert/0"]  # TPE: in order
    storage = open_storage(plan)
    name = None
    # a killed attempt of slot 0 left a RUNNING trial behind
    for sid in ("trial/fr-e3c-ner-doc/bert/0", "trial/fr-e3c-ner-doc/bert/1"):
        if sid.endswith("/0"):
            from longadapt.study.search import _study

            zombie = _study(plan, plan.stages[sid]).ask()
            zombie.set_user_attr("slot", 0)
            name = zombie.study.study_name
        run_stage(plan, plan.stages[sid])
        assert status(plan, plan.stages[sid])[0]
    first = [read_record(plan, f"trial/fr-e3c-ner-doc/bert/{k}")["lr"] for k in (0, 1)]
    assert all(1e-4 <= lr <= 1e-2 for lr in first) and first[0] != first[1]
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]

    again = tmp_path / "again"  # the same search from scratch, elsewhere: the same rates
    again.mkdir()
    (again / "study.yaml").write_text(text.replace("tiny-bert", str(tmp_path / "tiny-bert")), encoding="utf-8")
    plan2 = build_plan(load_study(again / "study.yaml"))
    for k in (0, 1):
        run_stage(plan2, plan2.stages[f"trial/fr-e3c-ner-doc/bert/{k}"])
    assert [read_record(plan2, f"trial/fr-e3c-ner-doc/bert/{k}")["lr"] for k in (0, 1)] == first


def test_the_study_marker_in_an_adaptation_folder_is_not_part_of_the_model(tmp_path: Path) -> None:
    """Offline, convert and continue-keep write the same weights into two folders whose study markers differ;
    the model fingerprint (and so a fine-tuning run's) must not see the marker, or the second model's runs are
    never reused (measured: the twins of the QUAERO study ran twice)."""
    from longadapt.evaluation.fingerprint import STUDY_STAGE_MARKER, model_fingerprint

    for name, stage in (("a", "convert"), ("b", "continue-keep")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"same weights")
        (folder / "config.json").write_text('{"model_type": "longadapt"}', encoding="utf-8")
        (folder / STUDY_STAGE_MARKER).write_text(json.dumps({"fingerprint": stage}), encoding="utf-8")
    assert model_fingerprint(tmp_path / "a") == model_fingerprint(tmp_path / "b")
    (tmp_path / "b" / "config.json").write_text('{"model_type": "other"}', encoding="utf-8")
    assert model_fingerprint(tmp_path / "a")["sha256"] != model_fingerprint(tmp_path / "b")["sha256"]
