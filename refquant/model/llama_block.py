"""A NumPy LLaMA decoder block (float32), for layer-by-layer calibration of checkpoints.

Mirrors transformers ``models/llama/modeling_llama.py`` (``LlamaRMSNorm``,
``LlamaRotaryEmbedding`` default rope, ``rotate_half`` / ``apply_rotary_pos_emb``,
``LlamaAttention`` with grouped KV heads and a causal mask, ``LlamaMLP`` with SiLU), for
a batch of full sequences without padding or KV cache. :func:`block` returns the block's
output and, on request, the inputs of its seven linear layers, which is what GPTQ's
Hessians and AWQ's activation statistics are made of.

Shapes: ``h`` is (batch, seq, hidden); weights are (out_features, in_features) as stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["LlamaShape", "rms_norm", "rope", "block", "LINEARS"]

#: the linear layers of a block, by the input they share: (input name, modules)
LINEARS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attn_in", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ("attn_out", ("self_attn.o_proj",)),
    ("mlp_in", ("mlp.gate_proj", "mlp.up_proj")),
    ("mlp_act", ("mlp.down_proj",)),
)


@dataclass(frozen=True)
class LlamaShape:
    """The hyperparameters a block needs (from ``config.json``)."""

    n_head: int
    n_head_kv: int
    head_dim: int
    eps: float
    theta: float

    @classmethod
    def from_config(cls, config: Mapping) -> "LlamaShape":
        n_head = int(config["num_attention_heads"])
        return cls(n_head, int(config.get("num_key_value_heads") or n_head),
                   int(config.get("head_dim") or config["hidden_size"] // n_head),
                   float(config.get("rms_norm_eps", 1e-6)), float(config.get("rope_theta", 10000.0)))


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """``weight * x / sqrt(mean(x^2) + eps)`` over the last axis (``LlamaRMSNorm``)."""
    var = np.mean(np.square(x), axis=-1, keepdims=True)
    return (weight * (x / np.sqrt(var + np.float32(eps)))).astype(np.float32)


def rope(x: np.ndarray, theta: float) -> np.ndarray:
    """Rotate (batch, heads, seq, head_dim) by position: ``x cos + rotate_half(x) sin``.

    ``inv_freq = theta^(-2i/d)``, ``emb = cat(freqs, freqs)``; ``rotate_half`` pairs
    element ``i`` with ``i + d/2`` (the Hugging Face layout).
    """
    d, seq = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / (theta ** (np.arange(0, d, 2, dtype=np.float32) / d))
    freqs = np.outer(np.arange(seq, dtype=np.float32), inv_freq.astype(np.float32))
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)
    half = d // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return (x * cos + rotated * sin).astype(np.float32)


def _silu(x: np.ndarray) -> np.ndarray:
    return (x / (np.float32(1.0) + np.exp(-x))).astype(np.float32)


def block(h: np.ndarray, w: Mapping[str, np.ndarray], shape: LlamaShape, capture: bool = False
          ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One decoder layer: ``h + attn(norm(h))``, then ``+ mlp(norm(.))``.

    Parameters
    ----------
    h : ndarray of float32, shape (batch, seq, hidden)
    w : mapping
        The layer's weights by their names after ``model.layers.{i}.`` (``self_attn.q_proj.weight``
        ...), float32.
    shape : LlamaShape
    capture : bool
        Also return the inputs of the linear layers, keyed as in :data:`LINEARS`, each
        (batch, seq, in_features).
    """
    b, t, _ = h.shape
    nh, nkv, hd = shape.n_head, shape.n_head_kv, shape.head_dim
    seen: dict[str, np.ndarray] = {}
    x = rms_norm(h, w["input_layernorm.weight"], shape.eps)
    q = (x @ w["self_attn.q_proj.weight"].T).reshape(b, t, nh, hd).transpose(0, 2, 1, 3)
    k = (x @ w["self_attn.k_proj.weight"].T).reshape(b, t, nkv, hd).transpose(0, 2, 1, 3)
    v = (x @ w["self_attn.v_proj.weight"].T).reshape(b, t, nkv, hd).transpose(0, 2, 1, 3)
    q, k = rope(q, shape.theta), rope(k, shape.theta)
    k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)  # repeat_kv
    scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(hd ** -0.5)
    scores = np.where(np.tril(np.ones((t, t), dtype=bool)), scores, np.float32(-np.inf))
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    attn = ((scores / scores.sum(axis=-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(b, t, nh * hd)
    h = h + attn @ w["self_attn.o_proj.weight"].T
    x2 = rms_norm(h, w["post_attention_layernorm.weight"], shape.eps)
    act = _silu(x2 @ w["mlp.gate_proj.weight"].T) * (x2 @ w["mlp.up_proj.weight"].T)
    out = (h + act @ w["mlp.down_proj.weight"].T).astype(np.float32)
    if capture:
        seen = {"attn_in": x, "attn_out": attn.astype(np.float32), "mlp_in": x2, "mlp_act": act.astype(np.float32)}
    return out, seen
