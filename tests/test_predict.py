"""`longadapt predict`: the model evaluate kept, applied to new documents, gives the evaluation's scores;
BRAT output reads back; a stopped run continues; bad inputs are listed and skipped; 2 CPU processes
give the same output as one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from longadapt.cli import main
from longadapt.errors import LongAdaptError
from longadapt.evaluation import entities as E
from longadapt.evaluation import metrics as M
from longadapt.evaluation.readers import read_brat
from longadapt.evaluation.tasks import load_task
from longadapt.evaluation.testing import tiny_bert

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, minilm_dir: Path) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny") / "model", minilm_dir, max_position_embeddings=128)


@pytest.fixture(scope="module")
def ner_run(tiny: Path, tmp_path_factory) -> tuple[Path, dict]:
    """A tiny model fine-tuned on 8 E3C documents (it finds some entities: test F1 about 0.17)."""
    out = tmp_path_factory.mktemp("ev")
    assert main(["evaluate", "--model", f"tiny={tiny}", "--tasks", "fr-e3c-ner-doc", "--seeds", "1", "--epochs", "8",
                 "--set", "training.learning_rate=5e-3", "--set", "training.eval_every_epochs=1",
                 "--max-train-docs", "8", "--max-eval-docs", "6", "--save-models", "--out", str(out)]) == 0
    run_dir = out / "tiny" / "fr-e3c-ner-doc" / "seed-0"
    return run_dir / "model", json.loads((run_dir / "run.json").read_text())


def _jsonl(path: Path, docs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in docs),
                    encoding="utf-8")
    return path


def _predictions(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines())}


def test_predict_reproduces_the_evaluation_test_scores_ner(ner_run, shared_data: Path, tmp_path: Path) -> None:
    model, run = ner_run
    assert run["entities"]["test"]["total"]["predicted"] > 20  # the model predicts: equal scores mean something
    data = load_task("fr-e3c-ner-doc", data_root=shared_data).load_data()
    docs = data.doc_ids("test")[:6]
    texts = {ex.doc_id: ex.text for ex in data["test"]}
    src = _jsonl(tmp_path / "test.jsonl", [(d, texts[d]) for d in docs])
    assert main(["predict", "--model", str(model), "--input", str(src), "--out", str(tmp_path / "p")]) == 0
    rows = _predictions(tmp_path / "p")
    assert list(rows) == docs  # input order
    pred = {d: {(e["start"], e["end"], e["label"]) for e in rows[d]["entities"]} for d in docs}
    scores, table = E.mention_scores({d: data.gold["test"][d] for d in docs}, pred, ["CLINENTITY"])
    for k in ("f1", "precision", "recall"):
        assert scores[k] == pytest.approx(run["test"][k], abs=1e-12)
    assert table["total"]["predicted"] == run["entities"]["test"]["total"]["predicted"]
    assert all(0.0 < e["score"] <= 1.0 for r in rows.values() for e in r["entities"])
    assert all(texts[d][e["start"]:e["end"]] == e["text"] for d in docs for e in rows[d]["entities"])
    # the Python API gives the same mentions
    import longadapt

    api = longadapt.predict(model, [(docs[0], texts[docs[0]])])
    assert {(e["start"], e["end"], e["label"]) for e in api[0]["entities"]} == pred[docs[0]]


def test_predict_reproduces_the_evaluation_test_scores_multilabel(tiny: Path, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ev"
    assert main(["evaluate", "--model", f"tiny={tiny}", "--tasks", "fr-morfitt", "--seeds", "1", "--epochs", "1",
                 "--set", "training.learning_rate=1e-3", "--max-train-docs", "24", "--max-eval-docs", "16",
                 "--save-models", "--out", str(out)]) == 0
    run_dir = out / "tiny" / "fr-morfitt" / "seed-0"
    run = json.loads((run_dir / "run.json").read_text())
    test = load_task("fr-morfitt", data_root=shared_data).load_data()["test"][:16]
    src = _jsonl(tmp_path / "abstracts.jsonl", [(ex.id, ex.text) for ex in test])
    assert main(["predict", "--model", str(run_dir / "model"), "--input", str(src), "--out", str(tmp_path / "p")]) == 0
    rows = _predictions(tmp_path / "p")
    labels = load_task("fr-morfitt", data_root=shared_data).config.labels
    gold = np.array([[lab in ex.labels for lab in labels] for ex in test], dtype=int)
    pred = np.array([[lab in rows[ex.id]["labels"] for lab in labels] for ex in test], dtype=int)
    assert M.multilabel_scores(gold, pred) == pytest.approx(run["test"], abs=1e-12)
    assert all(rows[ex.id]["threshold"] == run["threshold"] for ex in test)
    csv_lines = (tmp_path / "p" / "predictions.csv").read_text().splitlines()
    assert csv_lines[0].startswith("id,labels,p_chemistry") and len(csv_lines) == 17


def test_brat_output_reads_back_with_crlf_and_accents(ner_run, tmp_path: Path) -> None:
    model, _ = ner_run
    src = tmp_path / "letters"
    src.mkdir()
    texts = {"lettre-1": "Patient âgé de 72 ans.\r\nAntécédents : diabète non insulinodépendant, hépatite B.\r\n",
             "lettre-2": "Fièvre à 39 °C ; toux sèche.\r\nÉchographie abdominale normale.\r\n" * 20}
    for name, text in texts.items():
        with open(src / f"{name}.txt", "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    assert main(["predict", "--model", str(model), "--input", str(src), "--out", str(tmp_path / "p")]) == 0
    rows = _predictions(tmp_path / "p")
    back = {d.id: d for d in read_brat(tmp_path / "p" / "brat")}
    assert set(back) == set(texts)
    for name, text in texts.items():
        assert (tmp_path / "p" / "brat" / f"{name}.txt").read_bytes() == text.encode("utf-8")  # CRLF kept
        assert back[name].text == text
        assert {(e.start, e.end, e.label) for e in back[name].entities} == \
            {(e["start"], e["end"], e["label"]) for e in rows[name]["entities"]}
    assert sum(len(r["entities"]) for r in rows.values()) > 0


def test_gold_labels_read_as_the_task_read_them(tiny: Path, shared_data: Path, tmp_path: Path) -> None:
    """A Mantra GSC model (labels from the AnnotatorNotes, quirks mapped) scores --gold against the notes'
    groups, not the BRAT types (CUIs), which would all be left out as other labels."""
    assert main(["evaluate", "--model", f"tiny={tiny}", "--tasks", "de-mantra-gsc-emea-ner", "--seeds", "1",
                 "--epochs", "1", "--max-train-docs", "4", "--max-eval-docs", "2", "--save-models",
                 "--out", str(tmp_path / "ev")]) == 0
    model = tmp_path / "ev" / "tiny" / "de-mantra-gsc-emea-ner" / "seed-0" / "model"
    info = json.loads((model / "config.json").read_text())["longadapt_task"]
    assert info["brat_labels"]["label_from"] == "note" and info["brat_labels"]["label_map"]["OBJC|CHEM"] == "OBJC"
    src = tmp_path / "units"
    shutil.copytree(shared_data / "tasks/de/mantra-gsc/German/EMEA_ec22-cui-best_man", src,
                    ignore=lambda _d, names: [n for n in names if not n.startswith(("0001_", "0070_"))])
    assert main(["predict", "--model", str(model), "--input", str(src), "--out", str(tmp_path / "p"), "--gold"]) == 0
    table = json.loads((tmp_path / "p" / "scores.json").read_text())["entities"]
    assert table["total"]["gold"] == 1 + 3  # PROTELOS (CHEM); NeuroBloc and Natrium (CHEM), Natrium (OBJC|CHEM)
    assert table["per_type"]["OBJC"]["gold"] == 1  # the OBJC|CHEM note, mapped to OBJC


def test_bad_inputs_are_listed_and_skipped(ner_run, tiny: Path, tmp_path: Path, caplog, capsys) -> None:
    model, _ = ner_run
    src = tmp_path / "in"
    src.mkdir()
    (src / "good.txt").write_text("Douleur thoracique et fièvre.", encoding="utf-8")
    (src / "empty.txt").write_text("  \n", encoding="utf-8")
    (src / "latin1.txt").write_bytes("fièvre".encode("latin-1"))
    (src / "table.csv").write_text("a,b\n", encoding="utf-8")
    caplog.set_level("WARNING")
    assert main(["predict", "--model", str(model), "--input", str(src), "--out", str(tmp_path / "p")]) == 1
    assert list(_predictions(tmp_path / "p")) == ["good"]  # the other documents are still predicted
    skipped = [json.loads(x) for x in (tmp_path / "p" / "skipped.jsonl").read_text().splitlines()]
    problems = {Path(s["source"]).name: s["problem"] for s in skipped}
    assert problems["empty.txt"] == "empty document" and "not valid utf-8" in problems["latin1.txt"]
    assert "--encoding" in problems["latin1.txt"]  # the problem names the option that reads it
    assert "not a .txt document" in problems["table.csv"] and "3 input(s) skipped" in caplog.text
    # the same Latin-1 note read with its encoding: predicted, its text decoded as written
    one = tmp_path / "latin1-only"
    one.mkdir()
    (one / "latin1.txt").write_bytes("Douleur thoracique et fièvre.".encode("latin-1"))
    assert main(["predict", "--model", str(model), "--input", str(one), "--encoding", "latin-1",
                 "--out", str(tmp_path / "p-latin1")]) == 0
    assert "fièvre" in (tmp_path / "p-latin1" / "brat" / "latin1.txt").read_text(encoding="utf-8")
    assert main(["predict", "--model", str(model), "--input", str(one), "--encoding", "latin-2000",
                 "--out", str(tmp_path / "p-bad")]) == 2
    assert "--encoding 'latin-2000' is not a codec Python knows" in capsys.readouterr().err
    # a model without a trained classification head, and a folder holding another model's predictions
    with pytest.raises(LongAdaptError, match="head is not a classification head"):
        from longadapt.evaluation.predict import Predictor

        Predictor(tiny)
    other = tmp_path / "other-model"
    shutil.copytree(model, other)
    from safetensors.torch import load_file, save_file

    weights = load_file(other / "model.safetensors")
    weights["classifier.bias"] = weights["classifier.bias"] + 1.0
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    code = main(["predict", "--model", str(other), "--input", str(src / "good.txt"), "--out", str(tmp_path / "p")])
    assert code == 2 and "holds the predictions of another model" in capsys.readouterr().err


def test_a_stopped_predict_continues_to_the_same_result(ner_run, tmp_path: Path) -> None:
    model, _ = ner_run
    src = tmp_path / "notes"
    src.mkdir()
    rng = np.random.default_rng(0)
    words = "le patient présente une fièvre et une toux avec douleur thoracique depuis trois jours".split()
    for k in range(24):
        (src / f"note{k:02d}.txt").write_text(" ".join(rng.choice(words, 300)) + " .", encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "longadapt", "predict", "--model", str(model), "--input", str(src),
           "--docs-per-batch", "1", "--device", "cpu"]
    proc = subprocess.Popen(cmd + ["--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    manifest = tmp_path / "killed" / "manifest-0.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not manifest.is_file() or len(manifest.read_text().splitlines()) < 5):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    done = len(manifest.read_text().splitlines())
    assert 5 <= done < 24 and not (tmp_path / "killed" / "predictions.jsonl").exists()
    assert json.loads((tmp_path / "killed" / "predict.json").read_text())["status"] == "running"
    again = subprocess.run(cmd + ["--out", str(tmp_path / "killed")], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"predicted {24 - done} documents" in again.stderr and f"({done} reused" in again.stderr
    whole = subprocess.run(cmd + ["--out", str(tmp_path / "whole")], env=env, capture_output=True, text=True)
    assert whole.returncode == 0
    assert (tmp_path / "killed" / "predictions.jsonl").read_text() == (tmp_path / "whole" / "predictions.jsonl").read_text()
    assert not [p for p in (tmp_path / "killed" / "json").iterdir() if p.name.startswith(".")]
    stamp = json.loads((tmp_path / "killed" / "predict.json").read_text())
    assert (stamp["status"], stamp["documents"], stamp["skipped"]) == ("completed", 24, 0)


def test_two_cpu_processes_give_the_output_of_one(ner_run, tmp_path: Path) -> None:
    model, _ = ner_run
    src = tmp_path / "notes"
    src.mkdir()
    for k in range(7):
        (src / f"n{k}.txt").write_text(f"Le patient {k} présente une fièvre et une toux sèche depuis {k} jours.",
                                       encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = ["predict", "--model", str(model), "--input", str(src), "--device", "cpu"]
    one = subprocess.run([sys.executable, "-m", "longadapt", *base, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(["accelerate", "launch", "--cpu", "--num_processes", "2", "-m", "longadapt", *base,
                          "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "two").glob("manifest-*.jsonl")) == ["manifest-0.jsonl", "manifest-1.jsonl"]
    assert (tmp_path / "two" / "predictions.jsonl").read_text() == (tmp_path / "one" / "predictions.jsonl").read_text()


def test_bf16_and_int8_predictions_agree_with_fp32(ner_run, shared_data: Path, tmp_path: Path) -> None:
    """The same kept model predicted in fp32, bf16 (autocast) and int8 (dynamic quantization): at least 90 % of
    the fp32 mentions found again and at most 10 % more mentions (tolerances of this tiny model;
    docs/benchmarks.md measures the scores of a real one)."""
    from longadapt.evaluation.predict import Predictor

    model, _ = ner_run
    data = load_task("fr-e3c-ner-doc", data_root=shared_data).load_data()
    docs = [(ex.doc_id, ex.text) for ex in data["test"]][:4]
    found = {}
    for prec in ("fp32", "bf16", "int8"):
        pred = Predictor(model, device="cpu", precision=prec)
        assert pred.precision.name == prec
        rows = pred(docs)
        found[prec] = {(r["id"], e["start"], e["end"], e["label"]) for r in rows for e in r["entities"]}
    assert len(found["fp32"]) > 10
    for prec in ("bf16", "int8"):
        shared = found[prec] & found["fp32"]
        assert len(shared) >= 0.9 * len(found["fp32"]), (prec, len(shared), len(found["fp32"]))
        assert len(found[prec]) <= 1.1 * len(found["fp32"])


def test_a_folder_is_continued_only_in_its_own_precision(ner_run, tmp_path: Path, capsys) -> None:
    model, _ = ner_run
    src = _jsonl(tmp_path / "in.jsonl", [("a", "Le patient présente une fièvre et une toux depuis trois jours.")])
    out = tmp_path / "p"
    assert main(["predict", "--model", str(model), "--input", str(src), "--out", str(out), "--device", "cpu",
                 "--precision", "int8"]) == 0
    stamp = json.loads((out / "predict.json").read_text())
    assert stamp["precision"] == {"used": "int8", "requested": "int8",
                                  "reason": "requested: dynamic int8 quantization of the linear layers (CPU)"}
    assert main(["predict", "--model", str(model), "--input", str(src), "--out", str(out), "--device", "cpu"]) == 2
    assert "precision int8" in capsys.readouterr().err


def test_evaluate_refuses_int8_before_loading_and_precision_is_in_the_fingerprint(shared_data: Path, tmp_path: Path,
                                                                                  capsys) -> None:
    from longadapt.evaluation.fingerprint import run_fingerprint
    from longadapt.evaluation.finetune import RunLimits

    assert main(["evaluate", "--model", str(tmp_path / "no-such-model"), "--tasks", "fr-e3c-ner-doc",
                 "--precision", "int8", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "int8 is dynamic quantization for inference" in err and "Traceback" not in err
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    fp = {mp: run_fingerprint(model, load_task("fr-e3c-ner-doc", shared_data, {"training": {"mixed_precision": mp}}),
                              0, RunLimits(), None)
          for mp in ("no", "bf16")}
    assert fp["no"]["sha256"] != fp["bf16"]["sha256"] and fp["bf16"]["task"]["training"]["mixed_precision"] == "bf16"
