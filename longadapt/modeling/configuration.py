"""Configuration of the longadapt encoder core.

One config hosts both families exactly:

* BERT-style: ``norm_position="post"``, biases everywhere, ``mlp_type="mlp"`` (GELU MLP),
  ``position_embedding_type="absolute"`` (learned positions), token-type embeddings.
* ModernBERT-style: ``norm_position="pre"``, no biases, ``mlp_type="glu"`` (GeGLU), rotary positions
  with one base for global and one for local layers, a global layer every K layers, a local
  window, a norm after the embeddings, no attention norm in layer 0 and a final norm.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

GLOBAL, LOCAL = "full_attention", "sliding_attention"


def layer_types_for(num_layers: int, global_attn_every_n_layers: int) -> list[str]:
    """Layer ``i`` is a global (full-attention) *layer* when ``global_attn_every_n_layers > 0 and
    i % global_attn_every_n_layers == 0``, a local (sliding-window) layer otherwise. (Global *tokens*, Longformer's, are something else: tokens
    that attend everywhere inside local layers; see ``global_token_projections``.)"""
    every = global_attn_every_n_layers
    return [GLOBAL if (every > 0 and i % every == 0) else LOCAL for i in range(num_layers)]
LAYER_TYPES = (GLOBAL, LOCAL)
BACKENDS = ("auto", "eager", "sdpa", "flash", "flex")


@strict
class LongAdaptConfig(PreTrainedConfig):
    r"""
    Args:
        vocab_size: number of token ids.
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: the shape.
        hidden_activation: activation of the MLP (``gelu`` is the exact erf GELU).
        mlp_type: ``"glu"`` (the input projection gives ``2 * intermediate_size``: ``act(a) * b``) or
            ``"mlp"`` (``act(Wi x)``, as in BERT).
        norm_position: ``"pre"`` (ModernBERT) or ``"post"`` (BERT: norm after each residual add).
        norm_eps, norm_bias: LayerNorm epsilon and whether norms have a bias.
        attention_bias, mlp_bias: biases of the attention and MLP projections.
        embedding_norm: LayerNorm after the embeddings.
        first_layer_attn_norm: with pre-norm, whether layer 0 normalises its attention input
            (ModernBERT does not: the embedding norm already did).
        final_norm: LayerNorm after the last layer (pre-norm models).
        position_embedding_type: ``"rope"`` or ``"absolute"`` (learned positions, BERT-style).
        max_position_embeddings: the longest document the model accepts.
        type_vocab_size: number of token types (0: no token-type embeddings).
        global_rope_theta, local_rope_theta: rotary bases of the global and the local layers.
        global_attn_every_n_layers: layer ``i`` is global when ``i % K == 0``; 1 makes every layer
            global, 0 makes every layer local. Ignored when ``layer_types`` is given.
        local_attention: total window of the local layers: a token sees ``local_attention // 2``
            tokens on each side (ModernBERT's convention).
        layer_types: explicit ``"full_attention"`` (global) / ``"sliding_attention"`` (local) per layer.
        global_token_projections: Longformer-style global tokens in the local layers. Each local layer
            then owns ``Wqkv_global`` (separate query/key/value projections of the global tokens), every
            query of a local layer also attends to the global tokens of its document, and the global
            tokens attend to their whole document with the global projections. Which tokens are global
            is given per batch by ``global_attention_mask`` (or by ``global_first_token``). Full-attention
            layers are unaffected: there every token already attends to its whole document.
        global_first_token: without a ``global_attention_mask``, make the first token of each document
            global (what Longformer does for classification). Needs ``global_token_projections``.
        attention_backend: ``"auto"`` (flash-attn on CUDA when installed, else FlexAttention on CUDA, else
            SDPA; logged with the reason), ``"eager"`` (the reference), ``"sdpa"``, ``"flash"`` or ``"flex"``
            (torch's FlexAttention with a block mask; compiled on CUDA; on the CPU forward only, layers
            with gradients run on SDPA).
        local_block_size: query block size of the SDPA local attention (default: the half window).
        embedding_dropout, attention_dropout, hidden_dropout: dropout rates (hidden_dropout applies
            to the attention and MLP outputs).
        head_activation, head_bias: the MLM prediction head (dense + activation + norm).
        decoder_bias: bias of the MLM decoder (whose weight is tied to the embeddings).
        sparse_prediction: with labels, compute MLM logits only at labelled (masked) positions.
        mlm_loss_chunk_size: masked tokens per chunk of the logits-free MLM loss (``return_logits=False``);
            None: about 4M logits per chunk on CPU, 128M on CUDA.
        classifier_pooling: ``"cls"`` (first token) or ``"mean"`` for sequence-level heads.
        classifier_activation, classifier_bias, classifier_norm, classifier_dropout: the pooler
            (dense + activation [+ norm]) and dropout before the classifier.
    """

    model_type = "longadapt"

    vocab_size: int = 32768
    hidden_size: int = 768
    num_hidden_layers: int = 22
    num_attention_heads: int = 12
    intermediate_size: int = 1152
    hidden_activation: str = "gelu"
    mlp_type: str = "glu"
    norm_position: str = "pre"
    norm_eps: float = 1e-5
    norm_bias: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    embedding_norm: bool = True
    first_layer_attn_norm: bool = False
    final_norm: bool = True
    position_embedding_type: str = "rope"
    max_position_embeddings: int = 8192
    type_vocab_size: int = 0
    global_rope_theta: float = 160000.0
    local_rope_theta: float = 10000.0
    global_attn_every_n_layers: int = 3
    local_attention: int = 128
    layer_types: list[str] | None = None
    global_token_projections: bool = False
    global_first_token: bool = False
    attention_backend: str = "auto"
    local_block_size: int | None = None
    embedding_dropout: float = 0.0
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0
    initializer_range: float = 0.02
    initializer_cutoff_factor: float = 2.0
    head_activation: str = "gelu"
    head_bias: bool = False
    decoder_bias: bool = True
    sparse_prediction: bool = True
    mlm_loss_chunk_size: int | None = None
    classifier_pooling: str = "cls"
    classifier_activation: str = "gelu"
    classifier_bias: bool = False
    classifier_norm: bool = True
    classifier_dropout: float = 0.0
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    cls_token_id: int | None = None
    sep_token_id: int | None = None
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        if self.layer_types is None:
            self.layer_types = layer_types_for(self.num_hidden_layers, self.global_attn_every_n_layers)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Check the knobs; raises ValueError with the offending field (called by the strict dataclass)."""
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})"
            )
        if len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(
                f"layer_types has {len(self.layer_types)} entries but num_hidden_layers is {self.num_hidden_layers}"
            )
        for t in self.layer_types:
            if t not in LAYER_TYPES:
                raise ValueError(f"layer_types: {t!r} is not one of {LAYER_TYPES}")
        if self.attention_backend not in BACKENDS:
            raise ValueError(f"attention_backend {self.attention_backend!r} is not one of {BACKENDS}")
        if self.mlp_type not in ("glu", "mlp"):
            raise ValueError(f"mlp_type {self.mlp_type!r} must be 'glu' or 'mlp'")
        if self.norm_position not in ("pre", "post"):
            raise ValueError(f"norm_position {self.norm_position!r} must be 'pre' or 'post'")
        if self.position_embedding_type not in ("rope", "absolute"):
            raise ValueError(
                f"position_embedding_type {self.position_embedding_type!r} must be 'rope' or 'absolute'"
            )
        if LOCAL in self.layer_types and self.local_attention < 2:
            raise ValueError(f"local_attention ({self.local_attention}) must be at least 2 for local layers")
        if self.global_first_token and not self.global_token_projections:
            raise ValueError("global_first_token needs global_token_projections=True (the layers that host global tokens)")
        if self.classifier_pooling not in ("cls", "mean"):
            raise ValueError(f"classifier_pooling {self.classifier_pooling!r} must be 'cls' or 'mean'")
        if self.mlm_loss_chunk_size is not None and self.mlm_loss_chunk_size < 1:
            raise ValueError(f"mlm_loss_chunk_size ({self.mlm_loss_chunk_size}) must be at least 1, or None (automatic)")
        if self.position_embedding_type == "rope" and self.head_dim % 2:
            raise ValueError(f"rotary positions need an even head dimension, got {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def local_half_window(self) -> int:
        return self.local_attention // 2


__all__ = ["LongAdaptConfig"]
