"""The three adaptation recipes, end to end at a small size on the real corpora."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import transformers
import yaml

import longadapt  # noqa: F401
from longadapt.errors import LongAdaptError
from longadapt.recipes.adapt import recipe_from_dict, run_recipe, set_rope_theta, smoke_recipe
from longadapt.recipes.files import load_recipe

REPO = Path(__file__).resolve().parents[1]


def _small(strategy: str, language: str, out: Path) -> dict:
    """The shipped tiny recipe, shrunk to seconds (same code path)."""
    d, _ = load_recipe(strategy, language, "tiny")
    return {**smoke_recipe(d), "out": str(out)}


def _check_output(out: Path, sentence: str) -> dict:
    run = json.loads((out / "run.json").read_text())
    card = (out / "README.md").read_text()
    assert "final validation bits per byte" in card and "token budget" in card
    model = transformers.AutoModelForMaskedLM.from_pretrained(out)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    fill = transformers.pipeline("fill-mask", model=model, tokenizer=tok)
    preds = fill(sentence.replace("MASK", tok.mask_token), top_k=3)
    assert len(preds) == 3 and all("token_str" in p for p in preds)
    return run


pytestmark = pytest.mark.usefixtures("one_thread")


def test_convert_recipe_french(tmp_path):
    out = tmp_path / "convert"
    result = run_recipe(recipe_from_dict(_small("convert", "fr", out)))
    run = _check_output(out, "Le patient présente une MASK thoracique.")
    assert run["strategy"] == "convert" and run["build"]["mlm_head"] == "initialised"
    # the new head starts at the corpus token frequencies (convert.calibrate_bias)
    assert run["build"]["calibration"]["cross_entropy_after"] < run["build"]["calibration"]["cross_entropy_before"]
    # a BERT-style core (post-norm, GELU, learned positions) has no stock ModernBERT form, and says why
    assert run["modernbert_export"]["written"] is False and "norm_position" in run["modernbert_export"]["reason"]
    assert not (out / "modernbert").exists()
    assert run["tokens_seen"] == 2 * 2048
    cfg = transformers.AutoConfig.from_pretrained(out)
    assert cfg.max_position_embeddings == 1024 and "sliding_attention" in cfg.layer_types
    # bits per byte at step 0 and at the end, overall and per position bucket, are recorded
    phase = result.phases[0]
    assert "bpb" in phase["initial_metrics"] and "bpb_pos_0_511" in phase["final_metrics"]
    # the representation check read held-out documents before and after the phases
    rep = run["representations"]
    assert rep["before"]["documents"] >= 1 and 0 < rep["before"]["mean_token_cosine"] < 0.9
    assert rep["after"]["documents"] == rep["before"]["documents"] and rep["warning"] is None
    assert "mean cosine between tokens" in (out / "README.md").read_text()


def test_the_representation_check_tells_a_collapsed_encoder_from_a_sound_one(minilm_dir):
    """A sound encoder's tokens point in many directions; one whose last layer gives every token the same
    vector is collapsed (cosine 1, one component), and the warning says so and what to change."""
    import torch

    from longadapt.interop import import_checkpoint
    from longadapt.recipes.representations import collapse_warning, representation_stats

    model = import_checkpoint(minilm_dir).model
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    texts = ["Le patient présente une douleur thoracique depuis trois jours, sans fièvre ni dyspnée.",
             "Posologie : un comprimé matin et soir pendant le repas ; ne pas dépasser la dose prescrite."]
    sound = representation_stats(model, tok, texts)
    assert sound["documents"] == 2 and sound["mean_token_cosine"] < 0.6 and sound["top_component_share"] < 0.5
    with torch.no_grad():  # the last layer's output norm now maps every token to the same vector
        norm = model.model.layers[-1].mlp_norm if hasattr(model.model.layers[-1], "mlp_norm") else None
        last = norm if norm is not None else [m for m in model.model.modules() if isinstance(m, torch.nn.LayerNorm)][-1]
        last.weight.zero_()
        last.bias.fill_(0.5)
    collapsed = representation_stats(model, tok, texts)
    assert collapsed["mean_token_cosine"] > 0.999 and collapsed["top_component_share"] == 1.0
    warning = collapse_warning(sound, collapsed)
    assert warning.startswith("the encoder's token representations collapsed during this adaptation: the mean "
                              f"cosine between the tokens of held-out documents went from {sound['mean_token_cosine']:.2f} "
                              "to 1.00") and "lr_multipliers" in warning
    assert collapse_warning(sound, sound) is None and collapse_warning(None, collapsed) is None
    # the measured cases of docs/results.md (held-out French documents; before: MiniLM made long, 0.25 / 10 %)
    start = {"mean_token_cosine": 0.2544, "top_component_share": 0.0978}
    for cosine, share, fine_tuned in ((0.46, 0.163, True), (0.70, 0.203, True), (0.61, 0.214, True),
                                      (0.878, 0.705, False), (0.964, 0.775, False), (0.981, 0.931, False)):
        after = {"mean_token_cosine": cosine, "top_component_share": share}
        assert (collapse_warning(start, after) is None) == fine_tuned, (cosine, share)
    # a model trained from scratch has nothing to lose: the small scratch recipe's measured 0.01 -> 0.94 (a
    # model that fine-tunes at 1e-3) is not a collapse of what it knew
    scratch = ({"mean_token_cosine": 0.0074, "top_component_share": 0.0527},
               {"mean_token_cosine": 0.9397, "top_component_share": 0.5671})
    assert collapse_warning(*scratch) is not None and collapse_warning(*scratch, pretrained=False) is None


def test_convert_recipe_with_a_head_warm_up_phase(tmp_path):
    out = tmp_path / "convert-head"
    shipped, _ = load_recipe("convert", "fr", "tiny")
    shipped["phases"] = [dict(name="head", max_length=4096, steps=4, freeze=["model.*"]),
                         dict(name="mlm", max_length=4096, steps=12)]
    d = {**smoke_recipe(shipped), "out": str(out)}
    # the smoke version keeps the phases (names, frozen parameters), only shorter
    assert d["phases"] == [dict(name="head", max_length=1024, steps=2, freeze=["model.*"]),
                           dict(name="mlm", max_length=1024, steps=2)]
    result = run_recipe(recipe_from_dict(d))
    head, mlm = (json.loads((out / "phases" / name / "run.json").read_text())["derived"] for name in ("head", "mlm"))
    # the warm-up trains the new MLM head only (dense + norm + decoder bias), the next phase everything
    assert head["trainable_parameters"] == 384 * 384 + 3 * 384 + 30522  # dense weight + bias, norm weight + bias
    assert mlm["trainable_parameters"] == mlm["parameters"]
    assert [p["name"] for p in result.phases] == ["head", "mlm"] and result.phases[1]["tokens_seen"] == 2 * 2 * 2048
    bad = _small("convert", "fr", tmp_path / "bad")
    bad["phases"] = [dict(name="head", max_length=1024, steps=2, freeze=["encoder.*"])]
    with pytest.raises(LongAdaptError, match="'encoder.\\*' matches no parameter"):
        run_recipe(recipe_from_dict(bad))


def test_continue_from_a_short_model_without_make_long_names_the_setting_to_write(tmp_path):
    d = _small("continue", "fr", tmp_path / "short")  # phases at 1,024 tokens, MiniLM takes 512
    d["continue"]["make_long"] = None
    with pytest.raises(LongAdaptError, match=r"accepts 512 tokens but a phase trains at 1024; add continue\.make_long "
                                             r"\(e\.g\. continue\.make_long\.positions=copy: the model is made long to the longest phase, "
                                             r"1024 tokens\)"):
        run_recipe(recipe_from_dict(d))


@pytest.mark.parametrize("arm", ["keep", "replace", "extend"])
def test_continue_recipe_vocabulary_arms(arm, tmp_path):
    out = tmp_path / arm
    d = _small("continue", "fr", out)
    d["continue"]["vocab_arm"] = arm
    run_recipe(recipe_from_dict(d))
    run = _check_output(out, "Le patient présente une MASK thoracique.")
    tok = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.AutoModelForMaskedLM.from_pretrained(out)
    assert model.config.vocab_size >= len(tok)
    transfer = run["build"]["transfer"]
    if arm == "keep":
        assert len(tok) == 30522
    # the decoder bias was fitted to the (new or kept) vocabulary's token frequencies: after replace and
    # extend, and for keep too because MiniLM ships no MLM head (a new head starts at the corpus prior)
    cal = run["build"]["calibration"]
    assert cal["masked_positions"] > 0 and cal["cross_entropy_after"] < cal["cross_entropy_before"]
    if arm == "replace":
        assert transfer["copied"] > 0 and transfer["new_vocab_size"] < 30522
        assert tok.cls_token == "[CLS]" and model.config.cls_token_id == tok.cls_token_id
    if arm == "extend":
        assert transfer["added_words_count"] > 0 and len(tok) > 30522


def test_scratch_recipe_two_phases_and_context_extension(tmp_path):
    out = tmp_path / "scratch"
    result = run_recipe(recipe_from_dict(_small("scratch", "fr", out)))
    assert [p["max_length"] for p in result.phases] == [256, 1024]
    # the real tokens of the extension phase stay within its budget (2 steps x 2,048)
    ext = [json.loads(line) for line in (out / "phases" / "extend" / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("tokens", 0) for r in ext) <= 2 * 2048
    assert result.phases[1]["tokens_seen"] == 2 * 2 * 2048
    cfg = transformers.AutoConfig.from_pretrained(out)
    assert cfg.global_rope_theta == 160000.0 and cfg.local_rope_theta == 10000.0
    assert cfg.max_position_embeddings == 1024
    run = _check_output(out, "Le patient présente une MASK thoracique.")
    # the knobs are ModernBERT's: a stock ModernBERT copy with the same weights and outputs
    assert run["modernbert_export"] == {"written": True, "path": "modernbert"}
    assert "modernbert/" in (out / "README.md").read_text()
    stock = transformers.AutoModelForMaskedLM.from_pretrained(out / "modernbert").eval()
    core = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    assert type(stock).__name__ == "ModernBertForMaskedLM" and stock.config.local_attention == cfg.local_attention
    tok = transformers.AutoTokenizer.from_pretrained(out / "modernbert")
    assert tok.model_max_length == 1024
    enc = tok(["Le patient présente une douleur thoracique depuis trois jours, sans fièvre."] * 2, return_tensors="pt")
    import torch

    with torch.no_grad():
        diff = (stock(**enc).logits - core(**enc).logits).abs().max().item()
    assert diff < 1e-4


def test_killed_recipe_resumes_to_the_same_model(tmp_path, caplog, request):
    """A two-phase recipe SIGKILLed right after the first checkpoint of its second phase (every phase
    checkpoints at least once per half): re-running it without --resume is refused with the way out;
    with --resume the finished phase is reused, the second continues from its checkpoint, and the
    result equals an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys

    from safetensors.torch import load_file

    from longadapt.cli import main

    old_umask = os.umask(0o022)  # the files of the run (both processes) must then be readable by the team
    request.addfinalizer(lambda: os.umask(old_umask))
    ref = tmp_path / "ref"
    ref_recipe = tmp_path / "ref.yaml"
    ref_recipe.write_text(yaml.safe_dump(_small("scratch", "fr", ref)))
    assert main(["adapt", str(ref_recipe)]) == 0
    reference = load_file(ref / "model.safetensors")

    out = tmp_path / "scratch"
    recipe = tmp_path / "scratch.yaml"
    recipe.write_text(yaml.safe_dump(_small("scratch", "fr", out)))
    # checkpoint 1 is phase "short" at step 1, checkpoint 2 phase "extend" at step 1
    env = {**os.environ, "LONGADAPT_FAULT": "checkpoint-saved@2", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    killed = subprocess.run([sys.executable, "-m", "longadapt", "adapt", str(recipe)], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (out / "phases" / "short" / "model" / "config.json").is_file()
    assert (out / "phases" / "extend" / "checkpoints" / "step-00000001" / "trainer_state.json").is_file()
    assert not (out / "model.safetensors").exists() and not (out / "phases" / "extend" / "model").exists()

    assert main(["adapt", str(recipe)]) == 2  # refused: the phase folders hold this run
    caplog.set_level("INFO", logger="longadapt.training.engine")
    assert main(["adapt", str(recipe), "--resume"]) == 0
    assert f"{out / 'phases' / 'short'} already holds this run, completed" in caplog.text  # reused, not retrained
    assert "resumed from" in caplog.text and "step-00000001" in caplog.text
    resumed = load_file(out / "model.safetensors")
    assert resumed.keys() == reference.keys()
    assert max((resumed[k].float() - reference[k].float()).abs().max().item() for k in reference) <= 1e-5
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed" and [p["name"] for p in run["phases"]] == ["short", "extend"]
    assert not list(out.rglob(".*.tmp-*"))
    import stat

    for path in [out, *out.rglob("*")]:  # weights, checkpoints, run.json, model card, tokenizer, metrics
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o044 == 0o044 and (not path.is_dir() or mode & 0o011 == 0o011), (path, oct(mode))


@pytest.mark.parametrize("strategy", ["convert", "continue", "scratch"])
@pytest.mark.parametrize("language, sentence", [("de", "Der Patient wurde mit MASK entlassen."),
                                                ("es", "El paciente presenta MASK abdominal.")])
def test_german_and_spanish_recipes_run_on_their_corpora(strategy, language, sentence, tmp_path):
    out = tmp_path / f"{strategy}-{language}"
    d = _small(strategy, language, out)
    if strategy == "continue":
        d["continue"]["vocab_arm"] = "replace"  # a tokenizer trained on the language's own corpus
    run_recipe(recipe_from_dict(d))
    run = _check_output(out, sentence)
    assert run["language"] == language and run["strategy"] == strategy
    assert run["config"]["corpus"] is None  # so the language pack's default corpus was used
    assert run["corpus"]["path"] == f"corpora/{language}.jsonl.gz"


def test_recipe_files_are_valid_and_state_their_budget():
    """One file per strategy and preset serves every language; each (strategy, language, preset) loads,
    checks and states the budget its phases add up to, with the language's name and pack defaults."""
    files = sorted(f for s in ("continue", "convert", "scratch") for f in (REPO / "recipes" / s).glob("*.yaml"))
    assert [f.relative_to(REPO / "recipes").as_posix() for f in files] == [
        f"{s}/{p}.yaml" for s in ("continue", "convert", "scratch") for p in ("base", "small", "tiny")]
    for strategy in ("convert", "continue", "scratch"):
        for language, fraction in (("fr", 0.005), ("de", 0.1), ("es", 0.005)):
            for preset in ("tiny", "small", "base"):
                d, where = load_recipe(strategy, language, preset)
                assert where.path == REPO / "recipes" / strategy / f"{preset}.yaml"
                assert d["language"] == language and d["preset"] == preset
                assert "{" not in d.get("description", "")
                if preset in ("tiny", "small"):  # the pack holds out the same documents for every strategy and budget
                    assert d["train"]["data"]["validation_fraction"] == fraction
                    if strategy == "convert":
                        assert {"fr": "French", "de": "German", "es": "Spanish"}[language] in d["description"]
                if d.get("base", "") is None:
                    d["base"] = "a-bert"  # the base presets of convert ask the user for one
                cfg = recipe_from_dict(d, where)
                assert cfg.token_budget == cfg.tokens(), (strategy, language, preset)
    # small is tiny at 4x the steps: every other training setting is the same
    for strategy in ("convert", "continue", "scratch"):
        tiny, _ = load_recipe(strategy, "fr", "tiny")
        small, _ = load_recipe(strategy, "fr", "small")
        assert [4 * p["steps"] for p in tiny["phases"]] == [p["steps"] for p in small["phases"]]
        for d in (tiny, small):
            for key in ("preset", "token_budget", "description"):
                d.pop(key, None)
            d["phases"] = [{k: v for k, v in p.items() if k != "steps"} for p in d["phases"]]
            d["train"].pop("eval_every")
        assert tiny == small, strategy


def test_a_language_file_beside_the_preset_file_wins_and_the_recipe_overrides_the_pack(tmp_path):
    shutil.copytree(REPO / "recipes" / "convert", tmp_path / "convert")
    d = yaml.safe_load((tmp_path / "convert" / "tiny.yaml").read_text())
    d["train"]["data"] = {"validation_fraction": 0.2}
    (tmp_path / "convert" / "de-tiny.yaml").write_text(yaml.safe_dump(d))
    de, where = load_recipe("convert", "de", "tiny", tmp_path)
    assert where.path.name == "de-tiny.yaml" and de["train"]["data"]["validation_fraction"] == 0.2
    assert "train.data.validation_fraction" not in where.defaults  # the recipe's own value: not the pack's
    fr, where = load_recipe("convert", "fr", "tiny", tmp_path)
    assert where.path.name == "tiny.yaml" and fr["train"]["data"]["validation_fraction"] == 0.005
    assert where.defaults["train.data.validation_fraction"].startswith(str(REPO / "languages" / "fr.yaml") + ":")
    with pytest.raises(LongAdaptError, match="no recipe .*huge.yaml.*available convert recipes: base, de-tiny, small, tiny"):
        load_recipe("convert", "fr", "huge", tmp_path)
    with pytest.raises(LongAdaptError, match="unknown language 'xx'"):
        load_recipe("convert", "xx", "tiny", tmp_path)


def test_recipe_errors_are_clear():
    with pytest.raises(LongAdaptError, match="strategy 'distil' is unknown"):
        recipe_from_dict({"strategy": "distil"})
    with pytest.raises(LongAdaptError, match="needs a base model"):
        recipe_from_dict({"strategy": "convert"})
    with pytest.raises(LongAdaptError, match="token_budget says 10 tokens"):
        recipe_from_dict({"strategy": "scratch", "token_budget": 10, "phases": [{"steps": 2}], "train": {"tokens_per_step": 8}})
    with pytest.raises(LongAdaptError, match=r"phases\[0\] \('main'\) .*unknown key 'lrr' \(did you mean 'lr'\?\)"):
        recipe_from_dict({"strategy": "scratch", "phases": [{"name": "main", "steps": 2}], "train": {"lrr": 1e-3}})
    with pytest.raises(LongAdaptError, match="unknown key 'schedule.nme'"):
        recipe_from_dict({"strategy": "scratch", "phases": [{"steps": 2, "train": {"schedule": {"nme": "wsd"}}}]})
    with pytest.raises(LongAdaptError, match=r"unknown key 'phases\.0\.stpes' \(did you mean 'phases\.0\.steps'\?\)"):
        recipe_from_dict({"strategy": "scratch", "phases": [{"stpes": 2}]})
    with pytest.raises(LongAdaptError, match="vocab_arm must be keep, replace or extend"):
        recipe_from_dict({"strategy": "continue", "base": "x", "continue": {"vocab_arm": "swap"}})


def test_set_rope_theta_refuses_absolute_positions(minilm_dir):
    from longadapt.interop import import_checkpoint

    with pytest.raises(LongAdaptError, match="rotary"):
        set_rope_theta(import_checkpoint(minilm_dir).model, 160000.0)


def test_cli_adapt_with_recipe_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(_small("scratch", "fr", tmp_path / "cli-out")))
    res = subprocess.run([sys.executable, "-m", "longadapt", "adapt", str(recipe), "train.seed=3"],
                         capture_output=True, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    run = json.loads((tmp_path / "cli-out" / "run.json").read_text())
    assert run["config"]["train"]["seed"] == 3
    res = subprocess.run([sys.executable, "-m", "longadapt", "adapt", "scratch", "--language", "xx"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "unknown language 'xx'" in res.stderr and "Traceback" not in res.stderr


def test_replace_arm_first_step_loss_beats_random_rows(tmp_path, minilm_dir, shared_data):
    """The transfer test of issue #4 on a model that has a trained MLM head: a small core is
    pretrained on French with the MiniLM WordPiece (the old vocabulary), then the replace arm moves it
    to a French tokenizer. Validation loss before any further step (bits per byte, so that the two
    tokenizers compare), for four starts of the same new vocabulary:

    * ``transfer+cal`` - what the recipe does: rows transferred, decoder bias calibrated to the new
      tokenizer's token frequencies (longadapt.recipes.calibration);
    * ``random`` - random new rows, the baseline the issue names;
    * ``random+cal`` - random rows with the same calibration (only the rows differ from transfer+cal);
    * ``transfer`` - rows transferred, no calibration.

    Tokenizer and calibration texts are documents 100-219 of the corpus, outside the 80 documents the
    engine splits into training and validation."""
    import copy

    from transformers import AutoTokenizer

    from longadapt.recipes.strategies.common import corpus_texts as _corpus_texts
    from longadapt.recipes.calibration import calibrate_output_bias
    from longadapt.tokenizers.training import train_tokenizer
    from longadapt.recipes.vocab_transfer import replace_vocabulary
    from longadapt.training import train, train_config_from_dict

    corpus = {"path": str(shared_data / "corpora" / "fr.jsonl.gz")}
    base = dict(
        tokenizer=str(minilm_dir), corpus=corpus, language="fr", max_length=256, tokens_per_step=2048,
        micro_batch_size=8, steps=60, lr=3e-3, eval_every=0, save_every=0, tensorboard=False, seed=0,
        schedule={"name": "wsd", "warmup_steps": 6, "decay_fraction": 0.2},
        data={"max_documents": 80, "max_validation_rows": 16},
        model={"config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                          "intermediate_size": 96, "local_attention": 64}},
    )
    old = train(train_config_from_dict({**base, "output_dir": str(tmp_path / "old")}))
    old_tok = AutoTokenizer.from_pretrained(minilm_dir)
    texts = _corpus_texts(corpus, "fr", 220)[100:]
    new_tok = train_tokenizer(texts, "fr", vocab_size=2000)
    new_dir = tmp_path / "new-tok"
    new_tok.save_pretrained(new_dir)

    scores = {}
    for init, calibrate in (("transfer", True), ("random", False), ("random", True), ("transfer", False)):
        moved = replace_vocabulary(copy.deepcopy(old.model), old_tok, new_tok, init=init).model
        name = init + ("+cal" if calibrate else "")
        if calibrate:
            report = calibrate_output_bias(moved, new_tok, texts, max_length=256, max_rows=48)
            assert report.cross_entropy_after < report.cross_entropy_before
        # steps=1 with lr ~0: the step-0 validation of the engine is the "first-step" loss
        cfg = train_config_from_dict({**base, "tokenizer": str(new_dir), "model": {}, "steps": 1, "lr": 1e-12,
                                      "output_dir": str(tmp_path / f"step0-{name}")})
        scores[name] = train(cfg, model=moved, tokenizer=new_tok).initial_metrics["bpb"]
    print("step-0 bits per byte:", scores)
    assert scores["transfer+cal"] < scores["random"] - 0.2, scores  # the criterion
    assert scores["transfer+cal"] < scores["random+cal"], scores  # the rows themselves help
    assert scores["transfer+cal"] < scores["transfer"] - 0.2, scores  # and the calibration does


def test_vocabulary_texts_leave_out_the_validation_documents(tmp_path, shared_data, minilm_dir):
    """Tokenizer training, vocabulary extension and bias calibration read the corpus through
    _corpus_texts: with the recipe's training options it returns exactly the engine's training
    documents (the validation split computed from the engine's own text hashes)."""
    from transformers import AutoTokenizer

    from longadapt.data import CorpusSpec
    from longadapt.data.corpus import text_hash
    from longadapt.data.pipeline import encode_corpus
    from longadapt.data.split import validation_mask
    from longadapt.recipes.strategies.common import corpus_texts as _corpus_texts

    corpus = {"path": str(shared_data / "corpora" / "fr.jsonl.gz")}
    train = {"seed": 3, "data": {"validation_fraction": 0.1, "max_documents": 60}}
    texts = _corpus_texts(corpus, "fr", None, train)
    encoded, _ = encode_corpus(CorpusSpec(path=corpus["path"]), AutoTokenizer.from_pretrained(minilm_dir), "fr",
                               max_documents=60, cache_dir=tmp_path)
    hashes = encoded.data.column("text_hash").to_pylist()
    held_out = validation_mask(hashes, 0.1, 3, 1)
    assert 0 < held_out.sum() < 20
    assert [text_hash(t) for t in texts] == [h for h, v in zip(hashes, held_out) if not v]
    assert _corpus_texts(corpus, "fr", 5, train) == texts[:5]
    assert len(_corpus_texts(corpus, "fr", 60)) == 60  # without training options: the first documents


TOY_STRATEGY = '''
"""A fourth strategy for the registry test: the base model's architecture and tokenizer with freshly
initialised weights (the "no pretrained knowledge" control arm)."""
from dataclasses import dataclass

import torch

from longadapt.interop import import_checkpoint
from longadapt.recipes.strategies import Strategy, register
from longadapt.recipes.strategies.common import recipe_seed
from longadapt.recipes.strategies.convert import base_tokenizer


@dataclass
class ReinitOptions:
    std: float = 0.02


def build(cfg, corpus):
    model = import_checkpoint(cfg.base).model
    torch.manual_seed(recipe_seed(cfg))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, cfg.options.std)
    return model, base_tokenizer(cfg), {"notes": [f"weights drawn from N(0, {cfg.options.std})"]}


register(Strategy(name="reinit", options=ReinitOptions, build=build, needs_base=True,
                  tokenizer_line=lambda o: "the base model's, weights re-drawn"))
'''


def test_a_fourth_strategy_is_one_module_and_one_recipe_file(tmp_path, minilm_dir):
    """Issue #14: adding a strategy takes one module (registering it) and one recipe file (naming it),
    and runs through ``longadapt adapt NAME --language fr`` like the built-in ones."""
    import os

    (tmp_path / "toy_strategies").mkdir()
    (tmp_path / "toy_strategies" / "__init__.py").write_text("")
    (tmp_path / "toy_strategies" / "reinit.py").write_text(TOY_STRATEGY)
    (tmp_path / "recipes" / "reinit").mkdir(parents=True)
    (tmp_path / "recipes" / "reinit" / "tiny.yaml").write_text(yaml.safe_dump({
        "strategy": "reinit", "strategy_module": "toy_strategies.reinit", "base": str(minilm_dir),
        "reinit": {"std": 0.05}, "phases": [{"name": "mlm", "max_length": 256, "steps": 2}],
        "train": {"tokens_per_step": 512, "micro_batch_size": 2, "eval_every": 0, "tensorboard": False,
                  "data": {"max_validation_rows": 2, "max_documents": 40}}}))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LONGADAPT_RECIPES": str(tmp_path / "recipes"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "longadapt", "adapt", "reinit", "--language", "es", "--out", str(out)],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["strategy"] == "reinit" and run["language"] == "es" and run["config"]["reinit"] == {"std": 0.05}
    assert run["build"]["notes"] == ["weights drawn from N(0, 0.05)"] and run["tokens_seen"] == 2 * 512
    assert "the base model's, weights re-drawn" in (out / "README.md").read_text()
    # the weights are the re-drawn ones after two steps, not MiniLM's
    base = transformers.AutoModel.from_pretrained(minilm_dir).embeddings.word_embeddings.weight
    adapted = transformers.AutoModelForMaskedLM.from_pretrained(out).get_input_embeddings().weight
    assert base.shape == adapted.shape and abs(adapted.std().item() - 0.05) < 0.01
    # a strategy the registry does not know, or a module that does not register it, is refused by name
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"strategy": "distil", "strategy_module": "toy_strategies.reinit"}))
    res = subprocess.run([sys.executable, "-m", "longadapt", "adapt", str(bad)], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "strategy 'distil' is unknown" in res.stderr and "registers reinit" in res.stderr


def test_recipe_sections_of_another_strategy_are_refused():
    with pytest.raises(LongAdaptError, match="section convert: holds the options of the convert strategy"):
        recipe_from_dict({"strategy": "scratch", "convert": {"max_length": 1024}})
    with pytest.raises(LongAdaptError, match=r"recipe \(convert\.max_lenght\): unknown key 'convert\.max_lenght' \(did you mean 'convert\.max_length'\?\)"):
        recipe_from_dict({"strategy": "convert", "base": "x", "convert": {"max_lenght": 1024}})


def test_recipe_typos_are_refused_at_load_with_file_line_and_a_suggestion(tmp_path):
    """Issue #14: a typo in any section of a recipe file stops ``longadapt adapt`` before any model is
    built, naming the file, the line and the closest valid key; overrides reach list items."""
    from longadapt.config import source_for

    good, _ = load_recipe("convert", "fr", "tiny")
    # one wording for every config: FILE:LINE (KEY): unknown key 'KEY' (did you mean 'VALID'?); valid keys...
    cases = {
        "train.lrr": ("train", {"lrr": 1e-3}, r":(\d+) \(lrr\): unknown key 'lrr' \(did you mean 'lr'\?\)"),
        "phase key": ("phases", [{"name": "mlm", "max_length": 4096, "steps": 16, "frezee": ["model.*"]}],
                      r":(\d+) \(phases\.0\.frezee\): unknown key 'phases\.0\.frezee' \(did you mean "
                      r"'phases\.0\.freeze'\?\); valid keys under phases\.0: "),
        "phase train": ("phases", [{"name": "mlm", "max_length": 4096, "steps": 16, "train": {"warmup": 3}}],
                        r":(\d+) \(warmup\): unknown key 'warmup'"),
        "strategy section": ("convert", {"positons": "copy"}, r":(\d+) \(convert\.positons\): unknown key "
                             r"'convert\.positons' \(did you mean 'convert\.positions'\?\)"),
        "top level": ("phasess", [], r":(\d+) \(phasess\): unknown key 'phasess' \(did you mean 'phases'\?\)"),
        "typed": ("convert", {"positions": "copy", "max_length": "long"},
                  r":(\d+) \(convert\.max_length\): convert\.max_length must be a whole number"),
    }
    for name, (key, value, pattern) in cases.items():
        d = copy.deepcopy(good)
        d.pop("token_budget")
        d[key] = value if key not in d or not isinstance(d[key], dict) else {**d[key], **value}
        path = tmp_path / f"{name.replace(' ', '-')}.yaml"
        path.write_text(yaml.safe_dump(d, sort_keys=False))
        with pytest.raises(LongAdaptError, match=pattern) as info:
            recipe_from_dict(d, source_for(path))
        import re

        line = int(re.search(pattern, str(info.value)).group(1))
        written = path.read_text().splitlines()[line - 1]
        assert (list(value)[-1] if isinstance(value, dict) else key if name == "top level" else "frezee"
                if name == "phase key" else "warmup") in written, (name, written)
        assert str(path) in str(info.value), name
    # through the command line: exit 2, the message, no model built (no output folder)
    res = subprocess.run([sys.executable, "-m", "longadapt", "adapt", str(tmp_path / "train.lrr.yaml"), "--out",
                          str(tmp_path / "never")], capture_output=True, text=True)
    assert res.returncode == 2 and "(did you mean 'lr'?)" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "never").exists()
    # an override reaches a list item; a wrong index is named
    from longadapt.config import deep_merge, parse_overrides

    two = {"phases": [{"name": "a", "steps": 1}, {"name": "b", "steps": 2}]}
    assert deep_merge(two, parse_overrides(["phases.1.steps=10"]))["phases"] == [{"name": "a", "steps": 1},
                                                                                 {"name": "b", "steps": 10}]
    with pytest.raises(LongAdaptError, match="phases has 2 item"):
        deep_merge(two, parse_overrides(["phases.2.steps=10"]))
    # an override's bad value is not blamed on the file's line
    d = deep_merge(good, parse_overrides(["train.lr=fast"]))
    path = tmp_path / "lr.yaml"
    path.write_text(yaml.safe_dump(good, sort_keys=False))
    with pytest.raises(LongAdaptError, match=r"command-line override 'train.lr=fast'"):
        recipe_from_dict(d, source_for(path, ["train.lr=fast"]))
