"""The longadapt encoder core: a transformers PreTrainedModel family (``model_type="longadapt"``).

Inputs follow transformers conventions (``input_ids``, ``attention_mask``, ``token_type_ids``,
``position_ids``) plus ``document_ids`` for packed rows: tokens of one row whose ids differ belong
to different documents, and attention never crosses documents. Padding is removed once at the
input; every layer runs on the real tokens only, and outputs are padded back at the end.

``global_attention_mask`` (B, L), 1 = global token, works as in Longformer for models with
``config.global_token_projections``: in local layers every token also attends to the global tokens of
its document, and global tokens attend to their whole document with their own projections.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.initialization import copy_, ones_, trunc_normal_, zeros_
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

from longadapt.modeling.attention import (
    BACKENDS,
    Layout,
    attend,
    attend_global_rows,
    build_globals,
    build_layout,
    resolve_backend,
)
from longadapt.modeling.configuration import GLOBAL, LOCAL, LongAdaptConfig, layer_types_for
from longadapt.modeling.loss import chunked_linear_cross_entropy


def _norm(config: LongAdaptConfig) -> nn.LayerNorm:
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)


class LongAdaptEmbeddings(nn.Module):
    def __init__(self, config: LongAdaptConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = (
            nn.Embedding(config.max_position_embeddings, config.hidden_size)
            if config.position_embedding_type == "absolute"
            else None
        )
        self.token_type_embeddings = (
            nn.Embedding(config.type_vocab_size, config.hidden_size) if config.type_vocab_size > 0 else None
        )
        self.norm = _norm(config) if config.embedding_norm else nn.Identity()
        self.drop = nn.Dropout(config.embedding_dropout)

    def forward(self, input_ids, inputs_embeds, position_ids, token_type_ids):
        x = self.tok_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(position_ids)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(position_ids)
            x = x + self.token_type_embeddings(token_type_ids)
        return self.drop(self.norm(x))


class LongAdaptRotary(nn.Module):
    """cos/sin tables for rotary positions (rotate-half convention, computed in fp32)."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        self.register_buffer("inv_freq", self._inv_freq(), persistent=False)

    def _inv_freq(self) -> torch.Tensor:
        return 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float) / self.head_dim))

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[:, None].float() * self.inv_freq.to(position_ids.device)[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (T, H, d); cos/sin: (T, d)."""
    xf = x.float()
    return (xf * cos[:, None] + _rotate_half(xf) * sin[:, None]).to(x.dtype)


class LongAdaptAttention(nn.Module):
    def __init__(self, config: LongAdaptConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_type = config.layer_types[layer_idx]
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
        # Longformer global tokens: their own query/key/value projections, in local layers only
        self.Wqkv_global = (
            nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
            if (config.global_token_projections and self.layer_type == LOCAL)
            else None
        )
        self.Wo = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)
        self.out_drop = nn.Dropout(config.hidden_dropout)

    @property
    def half_window(self) -> int | None:
        return None if self.layer_type == GLOBAL else self.config.local_half_window

    def forward(self, x: torch.Tensor, layout: Layout, rotary: tuple | None, backend: str) -> torch.Tensor:
        T = x.shape[0]
        qkv = self.Wqkv(x).view(T, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(1)
        if rotary is not None:
            cos, sin = rotary
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        glob = layout.globals if self.Wqkv_global is not None else None
        scale = self.head_dim**-0.5
        out = attend(
            q, k, v, layout,
            backend=backend,
            half_window=self.half_window,
            scale=scale,
            dropout=self.config.attention_dropout,
            training=self.training,
            block=self.config.local_block_size,
            glob=glob,
        )
        if glob is not None:
            out = out.index_copy(0, glob.index, self._global_rows(x, layout, rotary, backend, scale))
        return self.out_drop(self.Wo(out.reshape(T, -1)))

    def _global_rows(self, x: torch.Tensor, layout: Layout, rotary: tuple | None, backend: str, scale: float):
        """Outputs of the global tokens: global projections, attending to their whole document."""
        glob = layout.globals
        H, d, hid = self.num_heads, self.head_dim, self.config.hidden_size
        weight, bias = self.Wqkv_global.weight, self.Wqkv_global.bias
        idx = glob.index
        q = F.linear(x[idx], weight[:hid], None if bias is None else bias[:hid]).view(-1, H, d)
        kv = F.linear(x, weight[hid:], None if bias is None else bias[hid:]).view(x.shape[0], 2, H, d)
        k, v = kv.unbind(1)
        if rotary is not None:
            cos, sin = rotary
            q, k = apply_rotary(q, cos[idx], sin[idx]), apply_rotary(k, cos, sin)
        return attend_global_rows(
            q, k, v, layout, glob,
            backend=BACKENDS[backend].global_rows,
            scale=scale,
            dropout=self.config.attention_dropout,
            training=self.training,
        )


class LongAdaptMLP(nn.Module):
    def __init__(self, config: LongAdaptConfig):
        super().__init__()
        self.glu = config.mlp_type == "glu"
        width = config.intermediate_size * (2 if self.glu else 1)
        self.Wi = nn.Linear(config.hidden_size, width, bias=config.mlp_bias)
        self.act = ACT2FN[config.hidden_activation]
        self.Wo = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.drop = nn.Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.glu:
            a, gate = self.Wi(x).chunk(2, dim=-1)
            return self.drop(self.Wo(self.act(a) * gate))
        return self.drop(self.Wo(self.act(self.Wi(x))))


class LongAdaptLayer(GradientCheckpointingLayer):
    def __init__(self, config: LongAdaptConfig, layer_idx: int):
        super().__init__()
        self.pre_norm = config.norm_position == "pre"
        use_attn_norm = not (self.pre_norm and layer_idx == 0 and not config.first_layer_attn_norm)
        self.attn_norm = _norm(config) if use_attn_norm else nn.Identity()
        self.attn = LongAdaptAttention(config, layer_idx)
        self.mlp_norm = _norm(config)
        self.mlp = LongAdaptMLP(config)
        self.layer_type = config.layer_types[layer_idx]

    def forward(self, x: torch.Tensor, layout: Layout = None, rotary=None, backend: str = "sdpa") -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.attn_norm(x), layout, rotary, backend)
            return x + self.mlp(self.mlp_norm(x))
        x = self.attn_norm(x + self.attn(x, layout, rotary, backend))
        return self.mlp_norm(x + self.mlp(x))


class LongAdaptPreTrainedModel(PreTrainedModel):
    config_class = LongAdaptConfig
    config: LongAdaptConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LongAdaptEmbeddings", "LongAdaptLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        cfg = self.config
        cutoff = cfg.initializer_cutoff_factor
        std_in = cfg.initializer_range
        std_out = cfg.initializer_range / (2.0 * cfg.num_hidden_layers) ** 0.5

        def tn(weight, std):
            trunc_normal_(weight, mean=0.0, std=std, a=-cutoff * std, b=cutoff * std)

        if isinstance(module, nn.Linear) and module is not self.get_output_embeddings():
            # any linear layer not set below (task heads loaded from a checkpoint without them are
            # initialised module by module, so this generic case must stand on its own). Not the
            # MLM decoder: its weight is the tied input embedding matrix, which must survive
            # (resize_token_embeddings initialises the resized decoder module).
            tn(module.weight, std_in)
        if isinstance(module, nn.LayerNorm):
            ones_(module.weight)
            if module.bias is not None:
                zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            tn(module.weight, std_in)
        elif isinstance(module, LongAdaptAttention):
            tn(module.Wqkv.weight, std_in)
            tn(module.Wo.weight, std_out)
            if module.Wqkv_global is not None:
                tn(module.Wqkv_global.weight, std_in)
        elif isinstance(module, LongAdaptMLP):
            tn(module.Wi.weight, std_in)
            tn(module.Wo.weight, std_out)
        elif isinstance(module, LongAdaptHead):
            tn(module.dense.weight, std_out)
        elif isinstance(module, LongAdaptForMaskedLM):
            if module.decoder.bias is not None:
                zeros_(module.decoder.bias)
        elif isinstance(module, (LongAdaptForSequenceClassification, LongAdaptForTokenClassification, LongAdaptForMultipleChoice)):
            tn(module.classifier.weight, cfg.hidden_size**-0.5)
        if isinstance(module, nn.Linear) and module.bias is not None and not isinstance(module, nn.Embedding):
            zeros_(module.bias)
        if isinstance(module, LongAdaptRotary):
            copy_(module.inv_freq, module._inv_freq())


def _pad_hidden(layout: Layout, hidden: list[torch.Tensor] | None) -> tuple[torch.Tensor, ...] | None:
    """Per-layer hidden states back in the (batch, length, hidden) shape of the input, if asked for."""
    return tuple(layout.pad(h) for h in hidden) if hidden is not None else None


class LongAdaptModel(LongAdaptPreTrainedModel):
    def __init__(self, config: LongAdaptConfig):
        super().__init__(config)
        self.embeddings = LongAdaptEmbeddings(config)
        self.layers = nn.ModuleList([LongAdaptLayer(config, i) for i in range(config.num_hidden_layers)])
        self.final_norm = _norm(config) if (config.final_norm and config.norm_position == "pre") else nn.Identity()
        if config.position_embedding_type == "rope":
            self.rotary_global = LongAdaptRotary(config.head_dim, config.global_rope_theta)
            self.rotary_local = LongAdaptRotary(config.head_dim, config.local_rope_theta)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.tok_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.tok_embeddings = value

    # -- the model edits itself (make_long, context extension): config and modules change together --

    def set_layer_types(self, global_attn_every_n_layers: int, local_attention: int | None = None) -> None:
        """Layer ``i`` becomes a global layer when ``global_attn_every_n_layers > 0 and
        i % global_attn_every_n_layers == 0`` and a local one otherwise (window ``local_attention`` tokens, ``local_attention // 2`` each side, when given)."""
        cfg = self.config
        if local_attention is not None:
            cfg.local_attention = int(local_attention)
        cfg.global_attn_every_n_layers = int(global_attn_every_n_layers)
        cfg.layer_types = layer_types_for(cfg.num_hidden_layers, cfg.global_attn_every_n_layers)
        for layer, kind in zip(self.layers, cfg.layer_types):
            layer.layer_type = kind
            layer.attn.layer_type = kind

    def set_rope_theta(self, global_theta: float | None = None, local_theta: float | None = None) -> None:
        """Set the rotary bases of the global and the local layers (None keeps one) and rebuild both rotary
        modules (a model that just switched to rotary positions gets them here)."""
        cfg = self.config
        if cfg.position_embedding_type != "rope":
            raise ValueError("a rotary base can only be set on a model with rotary positions")
        if global_theta is not None:
            cfg.global_rope_theta = float(global_theta)
        if local_theta is not None:
            cfg.local_rope_theta = float(local_theta)
        self.rotary_global = LongAdaptRotary(cfg.head_dim, cfg.global_rope_theta)
        self.rotary_local = LongAdaptRotary(cfg.head_dim, cfg.local_rope_theta)

    def extend_positions(self, max_length: int, positions: str = "copy") -> list[str]:
        """Accept ``max_length`` tokens: ``copy`` tiles the learned absolute positions (row ``p`` of the new
        table is row ``p % old_length``: the new length must be a multiple of the old), ``rope`` replaces
        them by rotary positions (on a rotary model it only raises the maximum). Returns notes."""
        cfg = self.config
        old_len = cfg.max_position_embeddings
        if max_length < old_len:
            raise ValueError(f"max_length {max_length} is shorter than the model's current maximum ({old_len})")
        notes = []
        if positions == "copy":
            if cfg.position_embedding_type != "absolute":
                raise ValueError("copy tiles learned absolute positions, but this model uses rotary positions")
            if max_length % old_len:
                raise ValueError(f"copy tiles the {old_len} learned positions: max_length must be a multiple of it")
            old = self.embeddings.position_embeddings.weight.data
            new = nn.Embedding(max_length, cfg.hidden_size)
            new.weight.data.copy_(old.repeat(max_length // old_len, 1))
            self.embeddings.position_embeddings = new
            notes.append(f"learned positions tiled {max_length // old_len}x: {old_len} -> {max_length}")
        elif positions == "rope":
            if cfg.position_embedding_type == "absolute":
                self.embeddings.position_embeddings = None
                cfg.position_embedding_type = "rope"
                notes.append("learned absolute positions removed; rotary positions used instead "
                             "(needs MLM training to recover)")
                self.set_rope_theta()
        else:
            raise ValueError(f"positions must be 'copy' or 'rope', not {positions!r}")
        cfg.max_position_embeddings = max_length
        return notes

    def attention_backend(self, device: torch.device) -> str:
        name = self.config.attention_backend
        if name == "auto":
            impl = getattr(self.config, "_attn_implementation", None) or ""
            if impl == "eager":
                name = "eager"
            elif impl.startswith("flash"):
                name = "flash"
        return resolve_backend(name, device)

    def _global_tokens(self, layout: Layout, global_attention_mask: torch.Tensor | None):
        """Which real tokens are global: ``global_attention_mask`` (1 = global; padding ignored), else
        the first token of each document when ``config.global_first_token``, else none."""
        cfg = self.config
        if global_attention_mask is not None:
            flags = layout.unpad(global_attention_mask).to(device=layout.position_ids.device) != 0
            if not cfg.global_token_projections and bool(flags.any()):
                raise ValueError(
                    "global_attention_mask marks global tokens, but this model has no global-token layers "
                    "(config.global_token_projections is False). Drop the mask, or convert the model with "
                    "global tokens (make_long(..., global_first_token=True) / longadapt import --global-first-token)."
                )
        elif cfg.global_first_token and cfg.global_token_projections:
            flags = torch.zeros(layout.num_tokens, dtype=torch.bool, device=layout.position_ids.device)
            flags[layout.cu_seqlens[:-1].long()] = True
        else:
            return None
        if LOCAL not in cfg.layer_types:
            return None  # no layer hosts global tokens
        return build_globals(layout, flags)

    def encode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        global_attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Layout, list[torch.Tensor] | None]:
        """Run the encoder on the real tokens: returns (T, hidden) states, the layout, and the
        per-layer unpadded states when asked."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        ref = input_ids if input_ids is not None else inputs_embeds
        B, L = ref.shape[:2]
        layout = build_layout((B, L), ref.device, attention_mask, document_ids, position_ids)
        if layout.max_seqlen > self.config.max_position_embeddings:
            raise ValueError(
                f"a document of {layout.max_seqlen} tokens is longer than this model allows "
                f"(max_position_embeddings={self.config.max_position_embeddings}); split it into windows"
            )
        layout.globals = self._global_tokens(layout, global_attention_mask)
        ids = layout.unpad(input_ids) if input_ids is not None else None
        emb = layout.unpad(inputs_embeds) if inputs_embeds is not None else None
        tt = layout.unpad(token_type_ids) if token_type_ids is not None else None
        x = self.embeddings(ids, emb, layout.position_ids, tt)

        rotary = {}
        if self.config.position_embedding_type == "rope":
            rotary[GLOBAL] = self.rotary_global(layout.position_ids)
            rotary[LOCAL] = self.rotary_local(layout.position_ids)
        backend = self.attention_backend(x.device)
        hidden = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, layout=layout, rotary=rotary.get(layer.layer_type), backend=backend)
            if hidden is not None:
                hidden.append(x)
        x = self.final_norm(x)
        if hidden is not None:
            hidden[-1] = x
        return x, layout, hidden

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        global_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        x, layout, hidden = self.encode(
            input_ids, attention_mask, document_ids, position_ids, token_type_ids, inputs_embeds,
            bool(output_hidden_states), global_attention_mask,
        )
        return BaseModelOutput(
            last_hidden_state=layout.pad(x),
            hidden_states=_pad_hidden(layout, hidden),
        )


class LongAdaptHead(nn.Module):
    """dense + activation + norm (the MLM transform, and the pooler of sequence heads)."""

    def __init__(self, config: LongAdaptConfig, activation: str, bias: bool, norm: bool = True):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=bias)
        self.act = ACT2FN[activation]
        self.norm = _norm(config) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(x)))


@dataclass
class LongAdaptMaskedLMOutput(MaskedLMOutput):
    """:class:`MaskedLMOutput` plus ``token_losses`` (N_masked,): the loss of each labelled position,
    given by ``forward(..., return_logits=False)`` without gradients."""

    token_losses: torch.Tensor | None = None


class LongAdaptForMaskedLM(LongAdaptPreTrainedModel):
    """Masked LM. With ``labels`` and ``config.sparse_prediction`` the logits are computed only at
    labelled positions and returned as ``(N_masked, vocab)`` in row-major order of those positions."""

    _tied_weights_keys = {"decoder.weight": "model.embeddings.tok_embeddings.weight"}

    def __init__(self, config: LongAdaptConfig):
        super().__init__(config)
        self.model = LongAdaptModel(config)
        self.head = LongAdaptHead(config, config.head_activation, config.head_bias)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=config.decoder_bias)
        self.post_init()

    def get_output_embeddings(self):
        return self.decoder

    def set_output_embeddings(self, new_embeddings):
        self.decoder = new_embeddings

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        document_ids=None,
        position_ids=None,
        token_type_ids=None,
        inputs_embeds=None,
        labels=None,
        output_hidden_states=None,
        return_dict=None,
        global_attention_mask=None,
        return_logits: bool = True,
        **kwargs,
    ) -> MaskedLMOutput:
        """``return_logits=False`` (with ``labels``): only the loss, computed chunk by chunk without the
        ``(N_masked, vocab)`` logits (:mod:`longadapt.modeling.loss`), and ``logits`` is None. The loss
        and its gradients are those of the default path; the training engine uses it. Without gradients
        (``torch.no_grad``) the output also holds ``token_losses``: the loss of every labelled position,
        in row-major order of ``labels != -100``."""
        x, layout, hidden = self.model.encode(
            input_ids, attention_mask, document_ids, position_ids, token_type_ids, inputs_embeds,
            bool(output_hidden_states), global_attention_mask,
        )
        loss = None
        if labels is not None and (self.config.sparse_prediction or not return_logits):
            flat = layout.unpad(labels)
            keep = flat != -100
        if labels is not None and not return_logits:
            h, target, chunk = self.head(x[keep]), flat[keep], self.config.mlm_loss_chunk_size
            token_losses = None
            if torch.is_grad_enabled():
                loss = chunked_linear_cross_entropy(h, self.decoder.weight, self.decoder.bias, target, chunk)
            else:
                token_losses = chunked_linear_cross_entropy(h, self.decoder.weight, self.decoder.bias, target, chunk,
                                                            reduction="none")
                loss = token_losses.mean() if token_losses.numel() else token_losses.sum()
            return LongAdaptMaskedLMOutput(loss=loss, logits=None, hidden_states=_pad_hidden(layout, hidden),
                                           token_losses=token_losses)
        if labels is not None and self.config.sparse_prediction:
            logits = self.decoder(self.head(x[keep]))
            loss = F.cross_entropy(logits.float(), flat[keep]) if logits.shape[0] else logits.sum() * 0.0
        else:
            logits = layout.pad(self.decoder(self.head(x)))
            if labels is not None:
                loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        return MaskedLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=_pad_hidden(layout, hidden),
        )


def _pool(config: LongAdaptConfig, x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """One vector per batch row: its first real token ("cls") or the mean of its real tokens."""
    B = layout.batch_size
    if config.classifier_pooling == "cls":
        first = torch.full((B,), x.shape[0], dtype=torch.long, device=x.device)
        first.scatter_reduce_(0, layout.row_index, torch.arange(x.shape[0], device=x.device), reduce="amin")
        return x[first]
    sums = x.new_zeros(B, x.shape[1]).index_add_(0, layout.row_index, x)
    counts = torch.bincount(layout.row_index, minlength=B).clamp(min=1).to(x.dtype)
    return sums / counts[:, None]


def _sequence_loss(config, logits, labels):
    problem = config.problem_type
    if problem is None:
        if config.num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
        config.problem_type = problem
    if problem == "regression":
        return F.mse_loss(logits.squeeze(-1).float(), labels.float().view(-1))
    if problem == "single_label_classification":
        return F.cross_entropy(logits.float().view(-1, config.num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


class LongAdaptForSequenceClassification(LongAdaptPreTrainedModel):
    """Single-label (cross-entropy), multi-label (BCE: ``problem_type="multi_label_classification"``
    or float labels) or regression (``num_labels=1``)."""

    def __init__(self, config: LongAdaptConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = LongAdaptModel(config)
        self.head = LongAdaptHead(config, config.classifier_activation, config.classifier_bias, config.classifier_norm)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, document_ids=None, position_ids=None,
                token_type_ids=None, inputs_embeds=None, labels=None, output_hidden_states=None,
                return_dict=None, global_attention_mask=None, **kwargs) -> SequenceClassifierOutput:
        x, layout, hidden = self.model.encode(
            input_ids, attention_mask, document_ids, position_ids, token_type_ids, inputs_embeds,
            bool(output_hidden_states), global_attention_mask,
        )
        logits = self.classifier(self.drop(self.head(_pool(self.config, x, layout))))
        loss = _sequence_loss(self.config, logits, labels) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits,
            hidden_states=_pad_hidden(layout, hidden),
        )


class LongAdaptForTokenClassification(LongAdaptPreTrainedModel):
    def __init__(self, config: LongAdaptConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = LongAdaptModel(config)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, document_ids=None, position_ids=None,
                token_type_ids=None, inputs_embeds=None, labels=None, output_hidden_states=None,
                return_dict=None, global_attention_mask=None, **kwargs) -> TokenClassifierOutput:
        x, layout, hidden = self.model.encode(
            input_ids, attention_mask, document_ids, position_ids, token_type_ids, inputs_embeds,
            bool(output_hidden_states), global_attention_mask,
        )
        logits_flat = self.classifier(self.drop(x))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits_flat.float(), layout.unpad(labels), ignore_index=-100)
        return TokenClassifierOutput(
            loss=loss, logits=layout.pad(logits_flat),
            hidden_states=_pad_hidden(layout, hidden),
        )


class LongAdaptForMultipleChoice(LongAdaptPreTrainedModel):
    """Inputs are (batch, num_choices, length); one score per choice from the pooled vector."""

    def __init__(self, config: LongAdaptConfig):
        super().__init__(config)
        self.model = LongAdaptModel(config)
        self.head = LongAdaptHead(config, config.classifier_activation, config.classifier_bias, config.classifier_norm)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, document_ids=None, position_ids=None,
                token_type_ids=None, inputs_embeds=None, labels=None, output_hidden_states=None,
                return_dict=None, global_attention_mask=None, **kwargs) -> MultipleChoiceModelOutput:
        ref = input_ids if input_ids is not None else inputs_embeds
        B, C = ref.shape[:2]

        def flat(t):
            return None if t is None else t.reshape(B * C, *t.shape[2:])

        x, layout, _ = self.model.encode(
            flat(input_ids), flat(attention_mask), flat(document_ids), flat(position_ids),
            flat(token_type_ids), flat(inputs_embeds), global_attention_mask=flat(global_attention_mask),
        )
        logits = self.classifier(self.drop(self.head(_pool(self.config, x, layout)))).view(B, C)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return MultipleChoiceModelOutput(loss=loss, logits=logits)


__all__ = [
    "LongAdaptPreTrainedModel",
    "LongAdaptModel",
    "LongAdaptForMaskedLM",
    "LongAdaptForSequenceClassification",
    "LongAdaptForTokenClassification",
    "LongAdaptForMultipleChoice",
]
