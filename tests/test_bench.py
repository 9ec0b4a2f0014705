"""The encoder benchmark runs end to end and writes the documented JSON records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from longadapt.bench.encoder import Shape, model_flops_per_token


def test_bench_encoder_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, "-m", "longadapt", "bench", "encoder", "--lengths", "64,600", "--models",
         "core,hf-bert", "--modes", "forward", "--hidden-size", "32", "--layers", "2",
         "--heads", "2", "--intermediate-size", "48", "--window", "16", "--min-time", "0.05", "--rounds", "1",
         "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr
    records = json.loads(out.read_text())
    # hf-bert only at <= 512; every record has the documented keys
    assert {(r["model"], r["length"], r["mode"]) for r in records} == {
        (m, n, "forward") for m, n in (("core", 64), ("core", 600), ("hf-bert", 64))
    }  # train mode: the realistic-batch test below
    for r in records:
        assert "error" not in r, r
        assert set(r) >= {"model", "length", "mode", "tokens_per_s", "peak_mem_mb"}
        assert r["tokens_per_s"] > 0


def test_realistic_batches_interleaved_rounds_and_paired_ratios(tmp_path):
    """--length-source draws rows from QUAERO MEDLINE titles; models alternate (round 2 starts with the other
    one); the summary prints each model's per-round ratio to the reference with its spread."""
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, "-m", "longadapt", "bench", "encoder", "--length-source", "quaero-medline",
         "--tokens-per-batch", "512", "--lengths", "128", "--models", "core,hf-modernbert", "--modes", "train",
         "--rounds", "2", "--batches", "2", "--hidden-size", "32", "--layers", "2", "--heads", "2",
         "--intermediate-size", "48", "--window", "16", "--min-time", "0.05", "--target", "1.0", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr
    records = json.loads(out.read_text())
    assert [(r["model"], r["round"]) for r in records] == [
        ("core", 0), ("hf-modernbert", 0), ("hf-modernbert", 1), ("core", 1)]
    for r in records:
        assert r["length_source"] == "quaero-medline" and 0 < r["padding_share"] < 1 and r["batch"] > 1
    assert "ratio to hf-modernbert: median [min-max]" in res.stdout and ">= 1x" in res.stdout
    core_row = next(line for line in res.stdout.splitlines() if line.startswith("| core |"))
    assert "x [" in core_row and any(word in core_row for word in ("| met |", "| not met |", "| unclear (spread) |"))


def test_batches_are_drawn_within_the_budget_and_ratios_pair_rounds():
    from longadapt.bench.encoder import draw_batches, paired_ratios, summarize

    pool = [10, 30, 200, 700]
    batches = draw_batches(pool, 512, 20, seed=3)
    assert batches == draw_batches(pool, 512, 20, seed=3)  # seeded
    for b in batches:
        assert sum(b) <= 512 or len(b) == 1  # a row longer than the budget is a batch of its own
        assert set(b) <= set(pool)
    base = {"length": 64, "mode": "train", "batch": 1, "peak_mem_mb": 10.0}
    recs = [{**base, "model": "a", "round": i, "tokens_per_s": v} for i, v in enumerate([130.0, 100.0, 150.0])]
    ref = [{**base, "model": "b", "round": i, "tokens_per_s": v} for i, v in enumerate([100.0, 100.0, 100.0])]
    assert paired_ratios(recs, ref) == [1.3, 1.0, 1.5]
    table = summarize(recs + ref, reference="b", target=1.25)
    row = next(line for line in table.splitlines() if line.startswith("| a |"))
    assert "| 130 |" in row and "1.30x [1.00-1.50]" in row and "unclear (spread)" in row
    assert "| met |" in summarize(recs + ref, reference="b", target=1.0)
    assert "| not met |" in summarize(recs + ref, reference="b", target=1.6)


def test_bench_rejects_unknown_model():
    res = subprocess.run([sys.executable, "-m", "longadapt", "bench", "encoder", "--models", "gpt"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "unknown model 'gpt'" in res.stderr


def test_flop_count_local_layers_are_linear_in_length():
    s = Shape(hidden_size=64, num_layers=3, num_heads=2, intermediate_size=96, local_attention=128, global_attn_every_n_layers=0)
    # all-local: per-token cost is the same at 1k and 8k
    assert model_flops_per_token("core", s, 8192) == model_flops_per_token("core", s, 1024)
    g = Shape(hidden_size=64, num_layers=3, num_heads=2, intermediate_size=96, local_attention=128, global_attn_every_n_layers=3)
    assert model_flops_per_token("hf-modernbert", g, 8192) > model_flops_per_token("hf-modernbert", g, 1024)


def test_bench_mlm_loss_writes_json(tmp_path):
    out = tmp_path / "loss.json"
    res = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_mlm_loss.py"), "--vocab", "500", "--hidden", "16", "--masked", "40",
         "--chunk", "16", "--repeats", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    records = json.loads(out.read_text())["records"]
    assert [(r["arm"], r["masked"], r["chunk"]) for r in records] == [("full", 40, None), ("chunked", 40, 16)]
    assert all(r["us_per_masked_token"] > 0 and "peak_extra_mb" in r for r in records)


def test_gpu_suite_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu_suite.py at tiny shapes on the CPU: every part runs and writes its JSON; the
    backends agree with eager within the stated tolerances; training steps run and are recorded."""
    import json
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "suite"
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "gpu_suite.py"), "--out", str(out), "--device",
                           "cpu", "--tiny", "--train-steps", "4", "--min-time", "0.1"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    correctness = json.loads((out / "correctness.json").read_text())
    assert correctness["pass"] and {(r["backend"], r["dtype"]) for r in correctness["results"]} == {
        ("sdpa", "fp32"), ("eager", "bf16"), ("sdpa", "bf16")}
    speed = json.loads((out / "speed.json").read_text())
    assert {r["model"] for r in speed["records"]} == {"core:sdpa", "hf-modernbert:sdpa", "hf-longformer"}
    assert all("error" not in r and r["tokens_per_s"] > 0 for r in speed["records"]) and speed["goals"]
    training = json.loads((out / "training.json").read_text())
    assert training["steps"] == 4 and training["train_tokens_per_s"] > 0 and training["loss_first"] is not None
    assert (out / "summary.md").is_file() and "flash_attn" in json.loads((out / "env.json").read_text())


def test_a_model_folder_is_measured_at_its_own_configuration(tmp_path):
    """--models NAME=DIR builds that folder's configuration (random weights); its FLOPs come from the
    configuration, and agree with the built-in core's count at the same shape."""
    from longadapt.bench.encoder import config_flops_per_token
    from longadapt.modeling import LongAdaptConfig, LongAdaptModel

    cfg = LongAdaptConfig(vocab_size=300, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                          intermediate_size=48, local_attention=16, global_attn_every_n_layers=3,
                          max_position_embeddings=256)
    LongAdaptModel(cfg).save_pretrained(tmp_path / "mine")
    shape = Shape(hidden_size=32, num_layers=3, num_heads=2, intermediate_size=48, local_attention=16, global_attn_every_n_layers=3)
    assert config_flops_per_token(cfg, 200) == model_flops_per_token("core", shape, 200)
    # by hand: 3 layers of 2 * (4 d^2 + 3 d i) matmul FLOPs, attention 4 d x (200 global | 17 local) keys
    assert config_flops_per_token(cfg, 200) == 3 * 2 * (4 * 32 * 32 + 3 * 32 * 48) + 4 * 32 * (200 + 17 + 17)
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, "-m", "longadapt", "bench", "encoder", "--models", f"mine={tmp_path / 'mine'}",
         "--lengths", "64,300", "--modes", "train", "--min-time", "0.05", "--rounds", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr
    ok, beyond = json.loads(out.read_text())
    assert ok["model"] == "mine" and ok["source"] == str(tmp_path / "mine") and ok["tokens_per_s"] > 0
    assert "shape" not in ok  # the --hidden-size ... options did not apply
    assert ok["tflops_per_s"] * 1e12 == pytest.approx(
        3 * config_flops_per_token(cfg, 64) * ok["tokens_per_s"], rel=1e-6)
    assert "longer than this model allows (max_position_embeddings=256)" in beyond["error"]


def test_dropout_off_means_no_dropout_anywhere_in_train_mode():
    """bench's train mode times models without dropout: nn.Dropout modules and the float probabilities that
    attention code reads itself (HF Longformer's band dropout was left on before this check existed)."""
    import torch

    from longadapt.bench.encoder import build_model, disable_dropout
    from longadapt.modeling import LongAdaptConfig, LongAdaptModel

    shape = Shape(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=48, local_attention=16, global_attn_every_n_layers=2,
                  vocab_size=100)
    models = {name: build_model(name, shape, 64) for name in ("hf-longformer", "hf-bert")}
    models["core"] = LongAdaptModel(LongAdaptConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
        local_attention=16, attention_dropout=0.3, hidden_dropout=0.3, embedding_dropout=0.3))
    ids = torch.randint(3, 100, (2, 64))
    for name, model in models.items():
        model.train()
        assert not torch.equal(model(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state), name
        disable_dropout(model)
        assert torch.equal(model(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state), name
        assert model.training
    assert models["core"].config.attention_dropout == 0.0  # read by the attention at every forward


def test_compiled_measurement_runs_and_records_its_warm_up():
    """--compile times torch.compile(model); every shape is compiled in the warm-up, recorded apart."""
    from longadapt.bench.encoder import measure_one

    shape = Shape(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=16, local_attention=8, global_attn_every_n_layers=1,
                  vocab_size=50)
    rec = measure_one("core", shape, 16, "forward", "cpu", "fp32", 0.01, 1, compile_model=True)
    # how many timed runs fit depends on how busy the machine is: at least one, never a number of them
    assert rec["compiled"] is True and rec["warmup_s"] > 0 and rec["tokens_per_s"] > 0 and rec["runs"] >= 1


def test_bench_finetune_times_the_passes_that_fine_tuning_makes(tmp_path, minilm_dir):
    """bench_finetune.py: the encoder side runs exactly the fine-tuning epoch's passes (same count, same
    real tokens), every measurement is recorded per round, and the table states the verdicts."""
    from longadapt.evaluation.testing import tiny_bert

    model = tiny_bert(tmp_path / "tiny", minilm_dir, max_position_embeddings=128)
    out = tmp_path / "ft.json"
    res = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_finetune.py"),
         "--model", f"tiny={model}", "--task", "fr-e3c-ner", "--max-train-docs", "2", "--rounds", "1",
         "--min-time", "0.05", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    record = json.loads(out.read_text())
    (rnd,) = record["rounds"]
    shapes = record["pass_shapes"]
    assert rnd["finetune"]["forward_passes"] == len(shapes)  # one epoch
    assert rnd["finetune"]["train_tokens"] == sum(map(sum, shapes))
    assert rnd["encoder"]["dropout"] == "off" and rnd["encoder-dropout"]["dropout"] == "model"
    assert rnd["encoder"]["runs"] % len(shapes) == 0  # whole epochs of passes were timed
    ratio = rnd["finetune"]["train_tokens_per_s"] / rnd["encoder"]["tokens_per_s"]
    assert rnd["ratio_encoder"] == pytest.approx(ratio)
    assert "1 epoch(s) on the first 2 documents" in res.stdout and "| tiny | fr-e3c-ner |" in res.stdout
