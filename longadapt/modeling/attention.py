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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

try:  # optional dependency, GPU only
    from flash_attn import flash_attn_varlen_func  # type: ignore

    HAS_FLASH_ATTN = True
except Exception:  # ImportError, or a broken CUDA install
    flash_attn_varlen_func = None
    HAS_FLASH_ATTN = False


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


def _band(L_q: int, L_k: int, offset: int, half: int, device) -> torch.Tensor:
    """allowed[i, j] = |(i + offset) - j| <= half  (query i, key j)."""
    qi = torch.arange(L_q, device=device)[:, None] + offset
    kj = torch.arange(L_k, device=device)[None, :]
    return (qi - kj).abs() <= half


def eager_attention(q, k, v, valid, half: int | None, scale: float, dropout: float, training: bool):
    """Reference attention: explicit L x L scores and mask (half=None: global)."""
    n, L, H, d = q.shape
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # (n, H, L, d)
    scores = torch.matmul(qh.float(), kh.float().transpose(-1, -2)) * scale
    allowed = torch.ones(L, L, dtype=torch.bool, device=q.device)
    if half is not None:
        allowed = _band(L, L, 0, half, q.device)
    allowed = allowed[None, None].expand(n, 1, L, L)
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


def _local_block_mask(valid, n, L, Lp, half, block, W, device) -> torch.Tensor:
    """(n*nb, 1, block, W) bool: query i of a block sits at window position i + half and sees the
    keys within half of it that are real tokens; filler queries see themselves (no empty rows)."""
    kvalid = torch.ones(n, L, dtype=torch.bool, device=device) if valid is None else valid
    kvalid = F.pad(kvalid, (half, Lp - L + half), value=False).unfold(1, W, block)  # (n, nb, W)
    band = _band(block, W, half, half, device)  # (block, W)
    mask = band[None, None] & kvalid[:, :, None, :]  # (n, nb, block, W)
    diag = torch.zeros(block, W, dtype=torch.bool, device=device)
    diag[torch.arange(block), torch.arange(block) + half] = True
    return (mask | diag).reshape(-1, 1, block, W)


def sdpa_local_attention(q, k, v, valid, half: int, block: int, scale: float, dropout: float, cache: dict | None = None):
    """Sliding-window attention by query blocks: each block of ``block`` queries attends to the
    ``block + 2*half`` keys around it. Cost O(L * (block + 2*half)); no L x L tensor."""
    n, L, H, d = q.shape
    if L <= block + 2 * half:  # the whole document fits in one window: a small dense band mask
        band = _band(L, L, 0, half, q.device)[None, None]
        mask = band if valid is None else band & valid[:, None, None, :]
        mask = mask | torch.eye(L, dtype=torch.bool, device=q.device)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, dropout_p=dropout, scale=scale
        )
        return out.transpose(1, 2)
    nb = math.ceil(L / block)
    Lp = nb * block
    W = block + 2 * half
    qb = F.pad(q, (0, 0, 0, 0, 0, Lp - L)).view(n, nb, block, H, d).transpose(2, 3).reshape(n * nb, H, block, d)

    def windows(t):  # (n, L, H, d) -> (n*nb, H, W, d)
        t = F.pad(t, (0, 0, 0, 0, half, Lp - L + half))  # (n, Lp + 2h, H, d)
        t = t.unfold(1, W, block)  # (n, nb, H, d, W)
        return t.permute(0, 1, 2, 4, 3).reshape(n * nb, H, W, d)

    kb, vb = windows(k), windows(v)
    key = ("local_mask", n, L, half, block, None if valid is None else valid.data_ptr())
    mask = cache.get(key) if cache is not None else None
    if mask is None:
        mask = _local_block_mask(valid, n, L, Lp, half, block, W, q.device)
        if cache is not None:
            cache[key] = mask
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, dropout_p=dropout, scale=scale)
    out = out.view(n, nb, H, block, d).transpose(2, 3).reshape(n, Lp, H, d)
    return out[:, :L]


def flash_attention(q, k, v, layout: Layout, half: int | None, scale: float, dropout: float):
    """flash-attn varlen on the unpadded (T, H, d) tokens."""
    dtype = q.dtype
    if dtype not in (torch.float16, torch.bfloat16):
        q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    window = (-1, -1) if half is None else (half, half)
    out = flash_attn_varlen_func(
        q, k, v,
        cu_seqlens_q=layout.cu_seqlens, cu_seqlens_k=layout.cu_seqlens,
        max_seqlen_q=layout.max_seqlen, max_seqlen_k=layout.max_seqlen,
        dropout_p=dropout, softmax_scale=scale, causal=False, window_size=window,
    )
    return out.to(dtype)


def resolve_backend(name: str, device: torch.device) -> str:
    if name == "auto":
        return "flash" if (HAS_FLASH_ATTN and device.type == "cuda") else "sdpa"
    if name == "flash" and not HAS_FLASH_ATTN:
        raise RuntimeError("attention_backend='flash' needs the flash-attn package: pip install 'longadapt[flash]'")
    if name == "flash" and device.type != "cuda":
        raise RuntimeError("attention_backend='flash' needs the model on a CUDA device")
    return name


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: Layout,
    *,
    backend: str,
    half: int | None,
    scale: float,
    dropout: float = 0.0,
    training: bool = False,
    block: int | None = None,
) -> torch.Tensor:
    """Attention of unpadded (T, H, d) q, k, v within documents. ``half`` = None: global;
    otherwise each token sees ``half`` tokens on each side. Returns (T, H, d)."""
    dropout = dropout if training else 0.0
    if backend == "flash":
        return flash_attention(q, k, v, layout, half, scale, dropout)
    if half is not None and half + 1 >= layout.max_seqlen:
        half = None  # the window covers every document: plain global attention is the same thing
    out = torch.empty_like(q) if len(layout.groups) > 1 or not layout.groups[0].contiguous else None
    for g in layout.groups:
        qg, kg, vg = _to_group(q, g), _to_group(k, g), _to_group(v, g)
        if backend == "eager":
            o = eager_attention(qg, kg, vg, g.valid, half, scale, dropout, training)
        elif half is None:
            o = sdpa_global_attention(qg, kg, vg, g.valid, scale, dropout)
        else:
            o = sdpa_local_attention(qg, kg, vg, g.valid, half, block or max(half, 16), scale, dropout, layout._cache)
        if out is None:
            return o.reshape(q.shape)
        _from_group(o, g, out)
    return out
