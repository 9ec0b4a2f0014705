"""Attention over padding-free batches.

The encoder works on *unpadded* tokens: a ``(T, ...)`` tensor holding only the real tokens of the
batch, with document boundaries in a :class:`Layout`. Attention never crosses a document.

Backends:

* ``eager``: explicit scores, an explicit mask and softmax. The reference in tests; it builds an
  ``L x L`` mask per document group and is quadratic for every layer type.
* ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention``. Global layers attend over each
  document (documents of similar length are batched together). Local layers split each document
  into query blocks of ``B`` tokens; a block attends to the ``B + 2h`` keys around it with a small
  ``B x (B + 2h)`` band mask, so time and memory are O(L x window) and no ``L x L`` mask exists.
* ``flash``: ``flash_attn_varlen_func`` on the unpadded tokens with ``window_size=(h, h)`` for local
  layers (CUDA only, fp16/bf16).

Global tokens (Longformer semantics, local layers with ``global_token_projections``): every query of a
local layer attends to its band *plus* the global tokens of its document (a global key inside the band
counts once), with the normal keys and values; then the outputs of the global tokens are recomputed
with the global projections attending to every real token of their document (:func:`attend_global_rows`).
On SDPA the document's global keys are appended as extra key columns to each query block, so the cost
stays O(L x (window + G)); the global rows are a (G x L) attention. On flash the band comes from
flash-attn and the global keys outside the band are merged in with the band's log-sum-exp.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

try:  # optional dependency, GPU only
    from flash_attn import flash_attn_varlen_func  # type: ignore

    HAS_FLASH_ATTN = True
except Exception:  # ImportError, or a broken CUDA install
    flash_attn_varlen_func = None
    HAS_FLASH_ATTN = False

logger = logging.getLogger(__name__)


@dataclass
class DocGroup:
    """Documents of similar length batched as ``(n, Lg)``: token ``gather[i, j]`` of the unpadded
    batch is position ``j`` of document ``i``; ``valid`` is False on filler positions.
    ``contiguous`` means the group is a plain reshape of a ``(n*Lg)`` slice starting at ``start``."""

    gather: torch.Tensor | None  # (n, Lg) long, index into the unpadded tokens (T = filler row)
    valid: torch.Tensor | None  # (n, Lg) bool or None when every position is real
    n: int
    length: int
    contiguous: bool = False
    start: int = 0


@dataclass
class GroupGlobals:
    """The global tokens of one :class:`DocGroup`, padded to ``count`` slots per document.

    ``is_global[i, j]``: position ``j`` of document ``i`` is global; slot ``s`` of document ``i`` holds
    the global token at position ``pos[i, s]`` (ascending), which is entry ``slot[i, s]`` of
    :attr:`GlobalTokens.index`; ``valid`` is False on filler slots (``slot`` = G there)."""

    is_global: torch.Tensor  # (n, Lg) bool
    pos: torch.Tensor  # (n, count) long
    valid: torch.Tensor  # (n, count) bool
    slot: torch.Tensor  # (n, count) long
    count: int
    cache: dict = field(default_factory=dict)


@dataclass
class GlobalTokens:
    """Which real tokens of a batch are global: ``index`` (G,) ascending positions in the unpadded
    tokens, and one :class:`GroupGlobals` per layout group (None for a group without any)."""

    index: torch.Tensor
    groups: list[GroupGlobals | None]

    @property
    def num_tokens(self) -> int:
        return int(self.index.shape[0])


@dataclass
class Layout:
    """Where the real tokens are and where documents start and end."""

    batch_size: int
    seq_len: int
    indices: torch.Tensor | None  # (T,) flat positions of real tokens in the (B*L) grid; None = all
    cu_seqlens: torch.Tensor  # (D+1,) int32 cumulative document lengths over the unpadded tokens
    max_seqlen: int
    position_ids: torch.Tensor  # (T,) position of each token inside its document
    doc_index: torch.Tensor  # (T,) document of each token
    row_index: torch.Tensor  # (T,) batch row of each token
    groups: list[DocGroup] = field(default_factory=list)
    globals: GlobalTokens | None = None  # Longformer-style global tokens, when the batch has any
    _cache: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return int(self.position_ids.shape[0])

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(T, ...) unpadded -> (B, L, ...) with zeros at padding positions."""
        if self.indices is None:
            return x.reshape(self.batch_size, self.seq_len, *x.shape[1:])
        out = x.new_zeros(self.batch_size * self.seq_len, *x.shape[1:])
        out[self.indices] = x
        return out.view(self.batch_size, self.seq_len, *x.shape[1:])

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, ...) -> (T, ...) real tokens only."""
        flat = x.reshape(self.batch_size * self.seq_len, *x.shape[2:])
        return flat if self.indices is None else flat[self.indices]


def _bucket_groups(lengths: torch.Tensor, starts: torch.Tensor, total: int) -> list[DocGroup]:
    """Batch documents whose lengths share a power-of-two bucket, so that filler stays below 2x."""
    lengths_l = lengths.tolist()
    if len(set(lengths_l)) == 1:  # every document has the same length: one reshape, no gather
        n, length = len(lengths_l), lengths_l[0]
        return [DocGroup(None, None, n, length, contiguous=True, start=0)]
    device = lengths.device
    buckets: dict[int, list[int]] = {}
    for i, n in enumerate(lengths_l):
        buckets.setdefault(max(0, math.ceil(math.log2(max(n, 1)))), []).append(i)
    groups = []
    for _, docs in sorted(buckets.items()):
        idx = torch.tensor(docs, device=device)
        lg = int(lengths[idx].max())
        pos = torch.arange(lg, device=device)
        valid = pos[None, :] < lengths[idx][:, None]
        gather = torch.where(valid, starts[idx][:, None] + pos[None, :], torch.full_like(valid, total, dtype=torch.long))
        groups.append(DocGroup(gather, None if bool(valid.all()) else valid, len(docs), lg))
    return groups


def build_layout(
    input_shape: tuple[int, int],
    device: torch.device,
    attention_mask: torch.Tensor | None = None,
    document_ids: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> Layout:
    """Work out the unpadded layout of a ``(B, L)`` batch.

    ``attention_mask`` (1 = real token) removes padding; ``document_ids`` splits a row into
    documents (a new document starts wherever the id changes; padding may carry any id);
    without ``document_ids`` each row is one document. ``position_ids`` (B, L), when given,
    replaces the within-document positions.
    """
    B, L = input_shape
    indices = None
    if attention_mask is not None and not bool(attention_mask.all()):
        indices = attention_mask.reshape(-1).nonzero(as_tuple=True)[0]
    T = B * L if indices is None else int(indices.shape[0])
    flat_pos = torch.arange(B * L, device=device) if indices is None else indices
    row_index = flat_pos // L

    new_doc = torch.ones(T, dtype=torch.bool, device=device)
    if T > 1:
        new_doc[1:] = row_index[1:] != row_index[:-1]
        if document_ids is not None:
            d = document_ids.reshape(-1)
            d = d if indices is None else d[indices]
            new_doc[1:] |= d[1:] != d[:-1]
    starts = new_doc.nonzero(as_tuple=True)[0]
    cu = torch.cat([starts, torch.tensor([T], device=device)])
    lengths = cu[1:] - cu[:-1]
    doc_index = torch.cumsum(new_doc.long(), 0) - 1
    if position_ids is not None:
        pos = position_ids.reshape(-1)
        pos = pos if indices is None else pos[indices]
    else:
        pos = torch.arange(T, device=device) - starts[doc_index]
    layout = Layout(
        batch_size=B,
        seq_len=L,
        indices=indices,
        cu_seqlens=cu.to(torch.int32),
        max_seqlen=int(lengths.max()) if T else 0,
        position_ids=pos,
        doc_index=doc_index,
        row_index=row_index,
    )
    layout.groups = _bucket_groups(lengths, starts, T)
    return layout


def _group_token_index(g: DocGroup, total: int, device) -> torch.Tensor:
    """(n, Lg) index of each group position into the unpadded tokens (``total`` on filler)."""
    if g.contiguous:
        return g.start + torch.arange(g.n * g.length, device=device).view(g.n, g.length)
    return g.gather


def build_globals(layout: Layout, is_global: torch.Tensor) -> GlobalTokens | None:
    """Index the global tokens of a batch. ``is_global`` is (T,) bool over the unpadded tokens.
    Returns None when no token is global (the plain local attention then runs unchanged)."""
    index = is_global.nonzero(as_tuple=True)[0]
    if index.numel() == 0:
        return None
    device = is_global.device
    T = layout.num_tokens
    G = int(index.shape[0])
    flags = torch.cat([is_global, is_global.new_zeros(1)])
    groups: list[GroupGlobals | None] = []
    for g in layout.groups:
        tok = _group_token_index(g, T, device)
        isg = flags[tok]  # (n, Lg)
        counts = isg.sum(1)
        count = int(counts.max())
        if count == 0:
            groups.append(None)
            continue
        # global positions first, in ascending order (stable sort on the flag)
        pos = torch.argsort((~isg).to(torch.int8), dim=1, stable=True)[:, :count]
        valid = torch.arange(count, device=device)[None, :] < counts[:, None]
        slot = torch.searchsorted(index, tok.gather(1, pos))
        slot = torch.where(valid, slot, torch.full_like(slot, G))
        groups.append(GroupGlobals(isg, pos, valid, slot, count))
    return GlobalTokens(index, groups)


# --------------------------------------------------------------------------------------------
# group gather/scatter


def _to_group(x: torch.Tensor, g: DocGroup) -> torch.Tensor:
    """(T, H, d) -> (n, Lg, H, d)."""
    if g.contiguous:
        return x[g.start : g.start + g.n * g.length].view(g.n, g.length, *x.shape[1:])
    filler = x.new_zeros(1, *x.shape[1:])
    return torch.cat([x, filler])[g.gather]


def _from_group(out: torch.Tensor, g: DocGroup, dest: torch.Tensor) -> None:
    """Write group output (n, Lg, H, d) back into dest (T, H, d)."""
    if g.contiguous:
        dest[g.start : g.start + g.n * g.length] = out.reshape(-1, *out.shape[2:])
        return
    if g.valid is None:
        dest[g.gather.reshape(-1)] = out.reshape(-1, *out.shape[2:])
    else:
        dest[g.gather[g.valid]] = out[g.valid]


# --------------------------------------------------------------------------------------------
# kernels on one group: q, k, v are (n, L, H, d); valid is (n, L) bool or None


def _band(L_q: int, L_k: int, offset: int, half_window: int, device) -> torch.Tensor:
    """allowed[i, j] = |(i + offset) - j| <= half  (query i, key j)."""
    qi = torch.arange(L_q, device=device)[:, None] + offset
    kj = torch.arange(L_k, device=device)[None, :]
    return (qi - kj).abs() <= half_window


def eager_attention(q, k, v, valid, half_window: int | None, scale: float, dropout: float, training: bool,
                    key_global: torch.Tensor | None = None):
    """Reference attention: explicit L x L scores and mask (half_window=None: global). ``key_global``
    (n, L) bool: keys every query also sees (Longformer global tokens)."""
    n, L, H, d = q.shape
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # (n, H, L, d)
    scores = torch.matmul(qh.float(), kh.float().transpose(-1, -2)) * scale
    allowed = torch.ones(L, L, dtype=torch.bool, device=q.device)
    if half_window is not None:
        allowed = _band(L, L, 0, half_window, q.device)
    allowed = allowed[None, None].expand(n, 1, L, L)
    if key_global is not None:
        allowed = allowed | key_global[:, None, None, :]
    if valid is not None:
        allowed = allowed & valid[:, None, None, :]
    allowed = allowed | torch.eye(L, dtype=torch.bool, device=q.device)  # filler rows see themselves
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    probs = F.dropout(probs, p=dropout, training=training)
    out = torch.matmul(probs, vh.float()).to(q.dtype)
    return out.transpose(1, 2)  # (n, L, H, d)


def sdpa_global_attention(q, k, v, valid, scale: float, dropout: float):
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
    mask = None if valid is None else valid[:, None, None, :]
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, dropout_p=dropout, scale=scale)
    return out.transpose(1, 2)


def _local_block_mask(valid, n, L, Lp, half_window, block, W, device) -> torch.Tensor:
    """(n*nb, 1, block, W) bool: query i of a block sits at window position i + half and sees the
    keys within half of it that are real tokens; filler queries see themselves (no empty rows)."""
    kvalid = torch.ones(n, L, dtype=torch.bool, device=device) if valid is None else valid
    kvalid = F.pad(kvalid, (half_window, Lp - L + half_window), value=False).unfold(1, W, block)  # (n, nb, W)
    band = _band(block, W, half_window, half_window, device)  # (block, W)
    mask = band[None, None] & kvalid[:, :, None, :]  # (n, nb, block, W)
    diag = torch.zeros(block, W, dtype=torch.bool, device=device)
    diag[torch.arange(block), torch.arange(block) + half_window] = True
    return (mask | diag).reshape(-1, 1, block, W)


def _local_block_mask_globals(valid, glob: GroupGlobals, n, L, Lp, half_window, block, W, device) -> torch.Tensor:
    """(n*nb, 1, block, W + count): the band of :func:`_local_block_mask` without the global keys
    (they come once, as the extra columns), then one column per global slot of the document."""
    nb = Lp // block
    kvalid = torch.ones(n, L, dtype=torch.bool, device=device) if valid is None else valid
    local_key = kvalid & ~glob.is_global
    local_key = F.pad(local_key, (half_window, Lp - L + half_window), value=False).unfold(1, W, block)  # (n, nb, W)
    band = _band(block, W, half_window, half_window, device)
    local = band[None, None] & local_key[:, :, None, :]  # (n, nb, block, W)
    qvalid = F.pad(kvalid, (0, Lp - L), value=False).view(n, nb, block)
    diag = torch.zeros(block, W, dtype=torch.bool, device=device)
    diag[torch.arange(block), torch.arange(block) + half_window] = True
    local = local | (diag[None, None] & ~qvalid[..., None])  # filler queries see themselves
    extra = glob.valid[:, None, None, :].expand(n, nb, block, glob.count)
    return torch.cat([local, extra], dim=-1).reshape(n * nb, 1, block, W + glob.count)


def _short_document_attention(q, k, v, valid, allowed, scale: float, dropout: float):
    """SDPA over documents no longer than one window: ``allowed`` (1|n, 1, L, L) is a mask of the
    size of a block, not of the sequence; padding keys are removed and every query sees itself."""
    L = q.shape[1]
    mask = allowed if valid is None else allowed & valid[:, None, None, :]
    mask = mask | torch.eye(L, dtype=torch.bool, device=q.device)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, dropout_p=dropout, scale=scale
    )
    return out.transpose(1, 2)


def _query_blocks(q, half_window: int, block: int):
    """(n, L, H, d) -> number of blocks, padded length, key-window width, and the queries as
    (n * nb, H, block, d)."""
    n, L, H, d = q.shape
    nb = math.ceil(L / block)
    Lp = nb * block
    qb = F.pad(q, (0, 0, 0, 0, 0, Lp - L)).view(n, nb, block, H, d).transpose(2, 3).reshape(n * nb, H, block, d)
    return nb, Lp, block + 2 * half_window, qb


def sdpa_local_attention(q, k, v, valid, half_window: int, block: int, scale: float, dropout: float, cache: dict | None = None,
                         glob: GroupGlobals | None = None):
    """Sliding-window attention by query blocks: each block of ``block`` queries attends to the
    ``block + 2*half`` keys around it. Cost O(L * (block + 2*half)); no L x L tensor.
    With ``glob``, each block also attends to the document's global keys, appended as extra key
    columns: O(L * (block + 2*half + G))."""
    if glob is not None:
        return _sdpa_local_globals(q, k, v, valid, half_window, block, scale, dropout, glob)
    n, L, H, d = q.shape
    if L <= block + 2 * half_window:  # the whole document fits in one window: a small dense band mask
        return _short_document_attention(q, k, v, valid, _band(L, L, 0, half_window, q.device)[None, None], scale, dropout)
    nb, Lp, W, qb = _query_blocks(q, half_window, block)

    def windows(t):  # (n, L, H, d) -> (n*nb, H, W, d)
        t = F.pad(t, (0, 0, 0, 0, half_window, Lp - L + half_window))  # (n, Lp + 2h, H, d)
        t = t.unfold(1, W, block)  # (n, nb, H, d, W)
        return t.permute(0, 1, 2, 4, 3).reshape(n * nb, H, W, d)

    kb, vb = windows(k), windows(v)
    key = ("local_mask", n, L, half_window, block, None if valid is None else valid.data_ptr())
    mask = cache.get(key) if cache is not None else None
    if mask is None:
        mask = _local_block_mask(valid, n, L, Lp, half_window, block, W, q.device)
        if cache is not None:
            cache[key] = mask
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, dropout_p=dropout, scale=scale)
    out = out.view(n, nb, H, block, d).transpose(2, 3).reshape(n, Lp, H, d)
    return out[:, :L]


def _sdpa_local_globals(q, k, v, valid, half_window: int, block: int, scale: float, dropout: float, glob: GroupGlobals):
    n, L, H, d = q.shape
    if L <= block + 2 * half_window:  # one window covers the document: a small dense mask
        band = _band(L, L, 0, half_window, q.device)[None, None] | glob.is_global[:, None, None, :]
        return _short_document_attention(q, k, v, valid, band, scale, dropout)
    nb, Lp, W, qb = _query_blocks(q, half_window, block)
    G = glob.count
    rows = torch.arange(n, device=q.device)[:, None]

    def windows(t):  # (n, L, H, d) -> (n*nb, H, W + G, d): the band keys, then the global keys
        band = F.pad(t, (0, 0, 0, 0, half_window, Lp - L + half_window)).unfold(1, W, block)  # (n, nb, H, d, W)
        band = band.permute(0, 1, 2, 4, 3)  # (n, nb, H, W, d)
        extra = t[rows, glob.pos].transpose(1, 2)[:, None].expand(n, nb, H, G, d)
        return torch.cat([band, extra], dim=3).reshape(n * nb, H, W + G, d)

    kb, vb = windows(k), windows(v)
    key = ("local_mask", half_window, block)
    mask = glob.cache.get(key)
    if mask is None:
        mask = glob.cache[key] = _local_block_mask_globals(valid, glob, n, L, Lp, half_window, block, W, q.device)
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, dropout_p=dropout, scale=scale)
    out = out.view(n, nb, H, block, d).transpose(2, 3).reshape(n, Lp, H, d)
    return out[:, :L]


def flash_attention(q, k, v, layout: Layout, half_window: int | None, scale: float, dropout: float):
    """flash-attn varlen on the unpadded (T, H, d) tokens."""
    dtype = q.dtype
    if dtype not in (torch.float16, torch.bfloat16):
        q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    window = (-1, -1) if half_window is None else (half_window, half_window)
    out = flash_attn_varlen_func(
        q, k, v,
        cu_seqlens_q=layout.cu_seqlens, cu_seqlens_k=layout.cu_seqlens,
        max_seqlen_q=layout.max_seqlen, max_seqlen_k=layout.max_seqlen,
        dropout_p=dropout, softmax_scale=scale, causal=False, window_size=window,
    )
    return out.to(dtype)


def flash_attention_with_globals(q, k, v, layout: Layout, half_window: int, scale: float, glob: GlobalTokens):
    """Local rows with global tokens on flash-attn (no dropout, no gradient: see :func:`attend`).

    flash-attn computes the band (global keys inside the band included, once) and returns its
    log-sum-exp (flash-attn 2: ``softmax_lse`` of shape (heads, tokens) for the varlen call); the global
    keys *outside* each query's band are a small (L x G) product per document, merged in exactly:
    ``out = (e^lse * out_band + sum_j e^s_j v_j) / (e^lse + sum_j e^s_j)``."""
    dtype = q.dtype
    if dtype not in (torch.float16, torch.bfloat16):
        q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    T, H, d = q.shape
    res = flash_attn_varlen_func(
        q, k, v,
        cu_seqlens_q=layout.cu_seqlens, cu_seqlens_k=layout.cu_seqlens,
        max_seqlen_q=layout.max_seqlen, max_seqlen_k=layout.max_seqlen,
        dropout_p=0.0, softmax_scale=scale, causal=False, window_size=(half_window, half_window), return_attn_probs=True,
    )
    out_band, lse = res[0], res[1]
    if tuple(lse.shape) != (H, T):
        raise RuntimeError(
            f"this flash-attn returns the softmax log-sum-exp with shape {tuple(lse.shape)}, not (heads, tokens) = "
            f"{(H, T)}; global tokens need flash-attn 2.x's varlen layout. Use attention_backend='sdpa'."
        )
    out = out_band.float()
    lse = lse.float().transpose(0, 1).contiguous()  # (T, H)
    kglob = torch.cat([k[glob.index].float(), k.new_zeros(1, H, d, dtype=torch.float)])
    vglob = torch.cat([v[glob.index].float(), v.new_zeros(1, H, d, dtype=torch.float)])
    result = out.clone()
    for g, gg in zip(layout.groups, glob.groups):
        if gg is None:
            continue
        qg = _to_group(q, g).float().transpose(1, 2)  # (n, H, Lg, d)
        ob = _to_group(out, g).transpose(1, 2)  # (n, H, Lg, d)
        lb = _to_group(lse, g).transpose(1, 2)  # (n, H, Lg)
        kg, vg = kglob[gg.slot].transpose(1, 2), vglob[gg.slot].transpose(1, 2)  # (n, H, count, d)
        scores = torch.matmul(qg, kg.transpose(-1, -2)) * scale  # (n, H, Lg, count)
        qpos = torch.arange(g.length, device=q.device)
        outside = (qpos[None, :, None] - gg.pos[:, None, :]).abs() > half_window  # (n, Lg, count)
        scores = scores.masked_fill(~(outside & gg.valid[:, None, :])[:, None], float("-inf"))
        m = torch.maximum(lb, scores.amax(-1))
        wb = torch.exp(lb - m)
        p = torch.exp(scores - m[..., None])
        merged = (wb[..., None] * ob + torch.matmul(p, vg)) / (wb + p.sum(-1))[..., None]
        _from_group(merged.transpose(1, 2), g, result)
    return result.to(dtype)


def attend_global_rows(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: Layout,
    glob: GlobalTokens,
    *,
    backend: str,
    scale: float,
    dropout: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """The global tokens' own attention: ``q`` (G, H, d) for the global tokens (in ``glob.index``
    order), ``k``/``v`` (T, H, d) for every token; each global token attends to every real token of
    its document. Cost O(G x L). Returns (G, H, d)."""
    dropout = dropout if training else 0.0
    G, H, d = q.shape
    out = q.new_empty(G, H, d)
    qx = torch.cat([q, q.new_zeros(1, H, d)])
    for g, gg in zip(layout.groups, glob.groups):
        if gg is None:
            continue
        qg = qx[gg.slot].transpose(1, 2)  # (n, H, count, d)
        kg, vg = _to_group(k, g).transpose(1, 2), _to_group(v, g).transpose(1, 2)  # (n, H, Lg, d)
        mask = None if g.valid is None else g.valid[:, None, None, :]
        if backend == "eager":
            scores = torch.matmul(qg.float(), kg.float().transpose(-1, -2)) * scale
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            probs = F.dropout(torch.softmax(scores, dim=-1), p=dropout, training=training)
            o = torch.matmul(probs, vg.float()).to(q.dtype)
        else:
            o = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=mask, dropout_p=dropout, scale=scale)
        o = o.transpose(1, 2)  # (n, count, H, d)
        out[gg.slot[gg.valid]] = o[gg.valid]
    return out


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


_FLASH_GLOBAL_FALLBACK_LOGGED = False


def _flash_unavailable(device: torch.device) -> str | None:
    if not HAS_FLASH_ATTN:
        return "attention_backend='flash' needs the flash-attn package: pip install 'longadapt[flash]'"
    if device.type != "cuda":
        return "attention_backend='flash' needs the model on a CUDA device"
    return None


def _attend_groups(kernel: str, q, k, v, layout: Layout, *, half_window, scale, dropout, training, block, glob):
    """Attention group by group (documents of similar length batched): ``kernel`` ``eager`` (explicit
    scores and masks, the reference) or ``sdpa`` (global: per document; local: query blocks with a band
    mask, O(L x window))."""
    if half_window is not None and half_window + 1 >= layout.max_seqlen:
        half_window, glob = None, None  # the window covers every document: plain global attention is the same thing
    out = torch.empty_like(q) if len(layout.groups) > 1 or not layout.groups[0].contiguous else None
    for i, g in enumerate(layout.groups):
        gg = glob.groups[i] if glob is not None else None
        qg, kg, vg = _to_group(q, g), _to_group(k, g), _to_group(v, g)
        if kernel == "eager":
            o = eager_attention(qg, kg, vg, g.valid, half_window, scale, dropout, training,
                                key_global=None if gg is None else gg.is_global)
        elif half_window is None:
            o = sdpa_global_attention(qg, kg, vg, g.valid, scale, dropout)
        else:
            o = sdpa_local_attention(qg, kg, vg, g.valid, half_window, block or max(half_window, 16), scale, dropout, layout._cache,
                                     glob=gg)
        if out is None:
            return o.reshape(q.shape)
        _from_group(o, g, out)
    return out


def _attend_flash(q, k, v, layout: Layout, *, half_window, scale, dropout, training, block, glob):
    """flash-attn's varlen kernel on the unpadded tokens (band via ``window_size``); local layers with
    global tokens merge the global keys in with the band's log-sum-exp, or run on SDPA blocks when
    gradients (or dropout) are needed."""
    global _FLASH_GLOBAL_FALLBACK_LOGGED
    if glob is None:
        return flash_attention(q, k, v, layout, half_window, scale, dropout)
    if not _needs_grad(q, k, v) and dropout == 0.0:
        return flash_attention_with_globals(q, k, v, layout, half_window, scale, glob)
    # flash-attn's backward ignores the gradient of the log-sum-exp that the merge needs:
    # with gradients (or dropout), local layers with global tokens run on SDPA blocks instead.
    if not _FLASH_GLOBAL_FALLBACK_LOGGED:
        logger.info("global tokens with gradients: local layers use the SDPA block path instead of flash-attn")
        _FLASH_GLOBAL_FALLBACK_LOGGED = True
    return _attend_groups("sdpa", q, k, v, layout, half_window=half_window, scale=scale, dropout=dropout, training=training,
                          block=block, glob=glob)


def _flex_unavailable(device: torch.device) -> str | None:
    try:
        importlib.import_module("torch.nn.attention.flex_attention")
    except ImportError as exc:
        return f"attention_backend='flex' needs torch's FlexAttention (torch >= 2.5): {exc}"
    return None


_FLEX_FALLBACK_LOGGED: set[str] = set()


@functools.lru_cache(maxsize=2)
def _flex_kernel(device_type: str) -> Callable[..., torch.Tensor]:
    """FlexAttention, compiled on CUDA (its fused kernel); on the CPU the uncompiled reference (compiling it
    there costs more than it saves on the shapes the tests use, and the CPU has the SDPA block path)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=True) if device_type == "cuda" else flex_attention


def _attend_flex(q, k, v, layout: Layout, *, half_window, scale, dropout, training, block, glob):
    """torch's FlexAttention over all unpadded tokens as one sequence, with a block mask: same document, and
    for a local layer within ``half`` positions or a global token of the document. FlexAttention has no
    dropout and (in torch 2.13) no backward on the CPU: there the layer runs on the SDPA blocks instead,
    and the log says why once."""
    from torch.nn.attention.flex_attention import create_block_mask

    why = ("FlexAttention has no dropout" if dropout > 0 else
           "FlexAttention does not support backward on CPU (torch's own limit)" if q.device.type == "cpu"
           and _needs_grad(q, k, v) else None)
    if why is not None:
        if why not in _FLEX_FALLBACK_LOGGED:
            logger.info("%s: this layer runs on the SDPA block path instead", why)
            _FLEX_FALLBACK_LOGGED.add(why)
        return _attend_groups("sdpa", q, k, v, layout, half_window=half_window, scale=scale, dropout=dropout, training=training,
                              block=block, glob=glob)
    T = q.shape[0]
    key = ("flex", half_window, None if glob is None else glob.num_tokens)
    mask = layout._cache.get(key)
    if mask is None:
        doc, pos = layout.doc_index, layout.position_ids
        is_global = torch.zeros(T, dtype=torch.bool, device=q.device)
        if glob is not None:
            is_global[glob.index] = True
        reach = T if half_window is None else half_window  # a global layer: every position of the document

        def mask_mod(b, h, qi, ki):
            return (doc[qi] == doc[ki]) & (((pos[qi] - pos[ki]).abs() <= reach) | is_global[ki])
        mask = create_block_mask(mask_mod, None, None, T, T, device=q.device)
        layout._cache[key] = mask
    with warnings.catch_warnings():  # uncompiled on the CPU on purpose (see _flex_kernel): no warning each call
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        out = _flex_kernel(q.device.type)(q.transpose(0, 1).unsqueeze(0), k.transpose(0, 1).unsqueeze(0),
                                     v.transpose(0, 1).unsqueeze(0), block_mask=mask, scale=scale)
    return out.squeeze(0).transpose(0, 1)


@dataclass(frozen=True)
class AttentionBackend:
    """One attention implementation. A new backend is one entry of :data:`BACKENDS` (its name also goes
    in ``configuration.BACKENDS``, which a test keeps equal) and a case in the equivalence tests.

    * ``attend(q, k, v, layout, *, half, scale, dropout, training, block, glob)``: a layer's attention
      over unpadded (T, H, d) tensors (``half`` None: a global layer; ``glob``: global tokens of a
      local layer), as :func:`attend` documents;
    * ``global_rows``: the kernel of the global tokens' own rows (:func:`attend_global_rows`);
    * ``unavailable(device)``: why it cannot run there, or None."""

    name: str
    attend: Callable[..., torch.Tensor]
    global_rows: str
    unavailable: Callable[[torch.device], str | None] = lambda device: None
    summary: str = ""


BACKENDS: dict[str, AttentionBackend] = {
    "eager": AttentionBackend("eager", functools.partial(_attend_groups, "eager"), "eager",
                              summary="explicit scores and masks (the reference; quadratic)"),
    "sdpa": AttentionBackend("sdpa", functools.partial(_attend_groups, "sdpa"), "sdpa",
                             summary="PyTorch SDPA; local layers in query blocks, O(L x window)"),
    "flash": AttentionBackend("flash", _attend_flash, "sdpa", _flash_unavailable,
                              summary="flash-attn varlen on CUDA (fp16/bf16), window_size for local layers"),
    "flex": AttentionBackend("flex", _attend_flex, "sdpa", _flex_unavailable,
                             summary="torch FlexAttention with a block mask (documents, window, global tokens); "
                                     "compiled on CUDA"),
}


_AUTO_LOGGED: set[str] = set()


def resolve_backend(name: str, device: torch.device) -> str:
    """The backend a model runs with: ``auto`` is flash-attn where it can run, then (on CUDA) FlexAttention,
    else SDPA; the log says which and why, once per device type."""
    if name == "auto":
        chosen, why = "sdpa", "on the CPU, SDPA's block path is the fastest measured (docs/benchmarks.md)"
        if BACKENDS["flash"].unavailable(device) is None:
            chosen, why = "flash", "flash-attn is installed and the model is on CUDA"
        elif device.type == "cuda" and BACKENDS["flex"].unavailable(device) is None:
            chosen, why = "flex", f"no flash-attn ({BACKENDS['flash'].unavailable(device)}); FlexAttention's fused kernel"
        elif device.type == "cuda":
            why = "neither flash-attn nor FlexAttention can run here"
        if device.type not in _AUTO_LOGGED:
            logger.info("attention backend auto -> %s: %s", chosen, why)
            _AUTO_LOGGED.add(device.type)
        return chosen
    if name not in BACKENDS:
        raise ValueError(f"attention backend {name!r} is not one of auto, {', '.join(BACKENDS)}")
    why = BACKENDS[name].unavailable(device)
    if why:
        raise RuntimeError(why)
    return name


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: Layout,
    *,
    backend: str,
    half_window: int | None,
    scale: float,
    dropout: float = 0.0,
    training: bool = False,
    block: int | None = None,
    glob: GlobalTokens | None = None,
) -> torch.Tensor:
    """Attention of unpadded (T, H, d) q, k, v within documents. ``half`` = None: global;
    otherwise each token sees ``half`` tokens on each side. With ``glob`` (local layers only), every
    query also sees the global tokens of its document (each key counted once); the global tokens'
    own rows are then replaced by the caller (:func:`attend_global_rows`). Returns (T, H, d)."""
    dropout = dropout if training else 0.0
    if glob is not None and half_window is None:
        glob = None  # full attention already sees every key once
    return BACKENDS[backend].attend(q, k, v, layout, half_window=half_window, scale=scale, dropout=dropout, training=training,
                                    block=block, glob=glob)
