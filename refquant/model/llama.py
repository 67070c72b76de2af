"""A NumPy forward pass of a LLaMA-architecture causal language model (``LlamaForCausalLM``).

It exists to measure what quantization does to a generative model the way the literature does,
by perplexity: every projection of every decoder block is a :class:`refquant.model.linear.Linear`
that :mod:`refquant.ptq` (or a layer-by-layer algorithm, :mod:`refquant.sequential`) can swap for
a quantized one. The embedding, the norms and the LM head stay float32, as in the GPTQ and AWQ
papers' evaluations (they quantize the decoder blocks only).

The computation follows Hugging Face ``transformers``' ``modeling_llama.py`` (``LlamaRMSNorm``,
``LlamaRotaryEmbedding`` with the default rope type, ``apply_rotary_pos_emb``, ``repeat_kv``,
``eager_attention_forward``, ``LlamaMLP``, ``LlamaDecoderLayer``), in float32:

====================  =============================================================================
step                  rule
====================  =============================================================================
embedding             h = E[ids]
block i               h = h + o_proj(attention(RMSNorm(h)));  h = h + down(silu(gate(x)) · up(x)),
                      x = RMSNorm(h)  (pre-norm, two residual branches)
RMSNorm               γ · x / sqrt(mean(x²) + eps), over the hidden axis
rotary (RoPE)         inv_freq_j = θ^(−2j/d), j < d/2; angle = position · inv_freq, repeated twice;
                      q' = q·cos + rotate_half(q)·sin, rotate_half([a, b]) = [−b, a] (halves, not
                      interleaved pairs: the HF layout; llama.cpp's GGUF converter permutes q/k)
attention             softmax(q kᵀ / sqrt(d) + causal mask) v per head; the key/value heads are
                      shared by num_attention_heads / num_key_value_heads query heads (GQA)
MLP                   SwiGLU: down_proj(silu(gate_proj(x)) · up_proj(x)), silu(x) = x / (1 + e^(−x))
head                  logits = lm_head(RMSNorm(h)) (tied to E when tie_word_embeddings)
====================  =============================================================================

``MistralForCausalLM`` (``modeling_mistral.py``) is the same with an optional sliding attention
window (query i sees keys j with i − j < sliding_window), ``Qwen2ForCausalLM``
(``modeling_qwen2.py``) the same with biases on the q/k/v projections; both run here.

Projections see hidden states as (tokens, hidden) rows (batch × sequence flattened), so a
"per-token" activation scale is one per row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refquant.model.linear import Linear, _check_replacements

__all__ = ["LlamaConfig", "CausalLM", "rms_norm", "silu", "rotary_cos_sin", "apply_rotary", "decoder_block",
           "BLOCK_LINEARS", "BLOCK_INPUTS", "ARCHITECTURES"]

#: The projections of one decoder block, in the order the block uses them (HF names).
BLOCK_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
#: The projections grouped by the input they share (RMSNorm(h), the attention context, RMSNorm(h'),
#: the gated MLP activation): what GPTQ's Hessians and AWQ's statistics are computed from.
BLOCK_INPUTS = (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), ("self_attn.o_proj",),
                ("mlp.gate_proj", "mlp.up_proj"), ("mlp.down_proj",))
#: ``config.json`` ``architectures`` / ``model_type`` whose decoder is this forward pass:
#: Mistral is LLaMA with an optional sliding attention window (``modeling_mistral.py``);
#: Qwen2 is LLaMA with biases on the q/k/v projections (``modeling_qwen2.py``).
ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}


@dataclass(frozen=True)
class LlamaConfig:
    """The fields of a LLaMA ``config.json`` the forward pass uses.

    Attributes
    ----------
    vocab_size, hidden_size, intermediate_size, num_hidden_layers : int
    num_attention_heads, num_key_value_heads, head_dim : int
        Query heads, key/value heads (grouped-query attention when fewer), width of one head.
    rms_norm_eps, rope_theta : float
    max_position_embeddings : int
        Longest sequence the forward pass accepts.
    tie_word_embeddings : bool
        The LM head reuses the embedding matrix.
    sliding_window : int or None
        Mistral's attention window: query ``i`` sees keys ``j`` with ``0 <= i - j < sliding_window``
        (None: every earlier key).
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    sliding_window: int | None = None

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                             f"num_key_value_heads={self.num_key_value_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even (rotary embeddings rotate pairs)")

    @classmethod
    def from_folder(cls, model_dir: str | Path) -> "LlamaConfig":
        """Read a Hugging Face ``config.json`` (see :meth:`from_dict`)."""
        return cls.from_dict(json.loads((Path(model_dir) / "config.json").read_text()))

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> "LlamaConfig":
        """The forward pass's fields of a ``config.json`` of one of :data:`ARCHITECTURES`.

        Raises
        ------
        ValueError
            Another architecture, or a variant this forward pass does not compute (rope scaling,
            another activation, LLaMA's optional biases, Qwen2's per-layer sliding window), named.
        """
        model_type = cfg.get("model_type")
        archs = cfg.get("architectures") or []
        if model_type not in ARCHITECTURES.values() or any(ARCHITECTURES.get(a) != model_type for a in archs):
            raise ValueError(f"config.json architectures={archs!r} model_type={model_type!r} is not supported; "
                             f"allowed: {', '.join(f'{a} ({t})' for a, t in ARCHITECTURES.items())}")
        checks = {
            "hidden_act": (cfg.get("hidden_act", "silu"), ("silu",)),
            "rope_scaling": (cfg.get("rope_scaling"), (None,)),
            "attention_bias": (cfg.get("attention_bias", False), (False,)),
            "mlp_bias": (cfg.get("mlp_bias", False), (False,)),
            "use_sliding_window": (cfg.get("use_sliding_window", False), (False,)),
        }
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"config.json {key}={value!r} is not supported for {model_type}; allowed: {allowed!r}")
        heads = int(cfg["num_attention_heads"])
        window = cfg.get("sliding_window") if model_type == "mistral" else None
        return cls(
            vocab_size=int(cfg["vocab_size"]),
            hidden_size=int(cfg["hidden_size"]),
            intermediate_size=int(cfg["intermediate_size"]),
            num_hidden_layers=int(cfg["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=float(cfg.get("rope_theta", 10000.0)),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            sliding_window=None if window is None else int(window),
        )


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """RMSNorm over the last axis (``LlamaRMSNorm``): ``weight · x / sqrt(mean(x²) + eps)``, float32.

    Parameters
    ----------
    x : ndarray of float32, shape (..., hidden)
    weight : ndarray of float32, shape (hidden,)
    eps : float
    """
    var = np.mean(x * x, axis=-1, keepdims=True)
    return (weight * (x / np.sqrt(var + np.float32(eps)))).astype(np.float32, copy=False)


def silu(x: np.ndarray) -> np.ndarray:
    """SiLU (swish), ``x / (1 + exp(−x))``, float32; exp overflow for very negative x gives 0, not NaN.

    Parameters
    ----------
    x : ndarray of float32, any shape
        Any values.
    """
    with np.errstate(over="ignore"):
        return (x / (np.float32(1) + np.exp(-x))).astype(np.float32, copy=False)


def rotary_cos_sin(positions: np.ndarray, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of the rotary angles (``LlamaRotaryEmbedding``, default rope type), float32.

    ``inv_freq_j = 1 / θ^(2j / head_dim)`` for ``j < head_dim/2``; angle = position · inv_freq,
    concatenated with itself to span ``head_dim``.

    Parameters
    ----------
    positions : ndarray of int, shape (seq,)
    head_dim : int
    theta : float

    Returns
    -------
    cos, sin : ndarray of float32, shape (seq, head_dim)
    """
    inv_freq = (1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim))
                ).astype(np.float32)
    angle = np.asarray(positions, np.float32)[:, None] * inv_freq[None, :]
    emb = np.concatenate([angle, angle], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def apply_rotary(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """``x·cos + rotate_half(x)·sin`` with ``rotate_half([a, b]) = [−b, a]`` over the last axis.

    Parameters
    ----------
    x : ndarray of float32, shape (..., seq, head_dim)
    cos, sin : ndarray of float32, shape (seq, head_dim)
    """
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return (x * cos + rotated * sin).astype(np.float32, copy=False)


class _LazyCheckpoint(Mapping):
    """The tensors of a folder's ``model.safetensors`` (or its shards), read one at a time as float32."""

    def __init__(self, model_dir: Path) -> None:
        try:
            from safetensors import safe_open
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("refquant.model needs the 'safetensors' package: pip install 'refquant[model]'") from exc
        self._safe_open = safe_open
        index = model_dir / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            self._files = {name: model_dir / file for name, file in weight_map.items()}
        else:
            path = model_dir / "model.safetensors"
            with safe_open(str(path), framework="numpy") as f:
                self._files = {name: path for name in f.keys()}
        if "model.embed_tokens.weight" not in self._files:
            raise ValueError(f"{model_dir} has no 'model.embed_tokens.weight' tensor: not a LLaMA checkpoint")

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._files:
            raise KeyError(f"the checkpoint has no tensor {name!r}")
        with self._safe_open(str(self._files[name]), framework="numpy") as f:
            return np.ascontiguousarray(f.get_tensor(name), dtype=np.float32)

    def __iter__(self):
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


class CausalLM:
    """A LLaMA causal LM in NumPy whose block projections can be replaced by quantized ones.

    Build one with :meth:`from_pretrained` (a Hugging Face LLaMA folder) or from a config and a
    mapping of tensors named as in ``LlamaForCausalLM``'s state dict (``model.embed_tokens.weight``,
    ``model.layers.{i}.self_attn.q_proj.weight``, ..., ``model.norm.weight``, ``lm_head.weight``).

    Parameters
    ----------
    config : LlamaConfig
    weights : mapping of str to ndarray
    tokenizer : tokenizers.Tokenizer, optional
        Used by :meth:`encode` only.
    storage_bytes : mapping of str to int, optional
        Bytes that a tensor (by its name in ``weights``) takes in the checkpoint when it is stored in
        another format than float32 (a GGUF file's Q6_K ``lm_head.weight``, say); the values in
        ``weights`` are then its dequantized values. :meth:`other_parameter_bytes` counts these.
    """

    def __init__(self, config: LlamaConfig, weights: Mapping[str, np.ndarray], tokenizer: Any = None, *,
                 storage_bytes: Mapping[str, int] | None = None) -> None:
        cfg = self.config = config
        self.tokenizer = tokenizer
        self._storage_bytes = {str(k): int(v) for k, v in (storage_bytes or {}).items()}
        self._embed = _f32(weights["model.embed_tokens.weight"])
        if self._embed.shape != (cfg.vocab_size, cfg.hidden_size):
            raise ValueError(f"model.embed_tokens.weight has shape {self._embed.shape}; config.json says "
                             f"({cfg.vocab_size}, {cfg.hidden_size})")
        self._head = self._embed if cfg.tie_word_embeddings else _f32(weights["lm_head.weight"])
        self._norms = {"model.norm": _f32(weights["model.norm.weight"])}
        self._linears: dict[str, Linear] = {}
        for i in range(cfg.num_hidden_layers):
            p = f"model.layers.{i}."
            for name in ("input_layernorm", "post_attention_layernorm"):
                self._norms[p + name] = _f32(weights[p + name + ".weight"])
            for name in BLOCK_LINEARS:  # Qwen2's q/k/v projections have biases
                bias = p + name + ".bias"
                self._linears[p + name] = Linear(weights[p + name + ".weight"], weights[bias] if bias in weights else None)
        kv = cfg.num_key_value_heads * cfg.head_dim
        expected = {"self_attn.q_proj": (cfg.num_attention_heads * cfg.head_dim, cfg.hidden_size),
                    "self_attn.k_proj": (kv, cfg.hidden_size), "self_attn.v_proj": (kv, cfg.hidden_size),
                    "self_attn.o_proj": (cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim),
                    "mlp.gate_proj": (cfg.intermediate_size, cfg.hidden_size),
                    "mlp.up_proj": (cfg.intermediate_size, cfg.hidden_size),
                    "mlp.down_proj": (cfg.hidden_size, cfg.intermediate_size)}
        for name, layer in self._linears.items():
            want = expected[name.split(".", 3)[3]]
            if layer.weight.shape != want:
                raise ValueError(f"{name}.weight has shape {layer.weight.shape}; config.json implies {want}")

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> "CausalLM":
        """Load a Hugging Face LLaMA folder (``config.json``, ``model.safetensors`` or its shards, and
        ``tokenizer.json`` when present), reading tensors one at a time with ``safe_open``."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"model_dir={str(model_dir)!r} is not a directory")
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"model_dir={str(model_dir)!r} has no config.json")
        if not ((model_dir / "model.safetensors").is_file() or (model_dir / "model.safetensors.index.json").is_file()):
            raise FileNotFoundError(f"model_dir={str(model_dir)!r} has no model.safetensors")
        tokenizer = None
        if (model_dir / "tokenizer.json").is_file():
            try:
                from tokenizers import Tokenizer
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError("reading tokenizer.json needs 'tokenizers': pip install 'refquant[model]'") from exc
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        return cls(LlamaConfig.from_folder(model_dir), _LazyCheckpoint(model_dir), tokenizer)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text`` (int64, shape (n,)) with the folder's tokenizer, no special tokens added."""
        if self.tokenizer is None:
            raise ValueError("this CausalLM has no tokenizer; load a folder with tokenizer.json")
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def other_parameter_bytes(self) -> int:
        """Bytes of the parameters that are not block projections (embedding, norms, LM head): float32,
        or what ``storage_bytes`` said for a tensor stored in another format."""
        size = self._storage_bytes.get
        head = 0 if self._head is self._embed else size("lm_head.weight", self._head.nbytes)
        return int(size("model.embed_tokens.weight", self._embed.nbytes) + head
                   + sum(size(name + ".weight", n.nbytes) for name, n in self._norms.items()))

    def tensors(self) -> dict[str, np.ndarray]:
        """Every parameter by its ``LlamaForCausalLM`` state-dict name (float32; a replaced projection
        gives its ``weight``, the dequantized one for a weight-only layer). Arrays are shared, not copied."""
        out = {"model.embed_tokens.weight": self._embed}
        out.update({name + ".weight": n for name, n in self._norms.items()})
        out.update({name + ".weight": np.asarray(layer.weight) for name, layer in self._linears.items()})
        if self._head is not self._embed:
            out["lm_head.weight"] = self._head
        return out

    def linears(self) -> dict[str, Linear]:
        """The replaceable projections by name (``model.layers.{i}.self_attn.q_proj`` ...), in order."""
        return dict(self._linears)

    def with_linears(self, replacements: Mapping[str, Any]) -> "CausalLM":
        """A new CausalLM sharing every tensor with this one, with some projections replaced.

        Parameters
        ----------
        replacements : mapping of str to Linear-like
            Layer name -> a callable ``(tokens, in) -> (tokens, out)``; names from :meth:`linears`.
        """
        _check_replacements(replacements, self._linears, "CausalLM")
        new = object.__new__(CausalLM)
        new.config, new.tokenizer = self.config, self.tokenizer
        new._embed, new._head, new._norms = self._embed, self._head, self._norms
        new._storage_bytes = self._storage_bytes
        new._linears = {**self._linears, **replacements}
        return new

    # -- forward --------------------------------------------------------------------------------

    def embed(self, input_ids: Any) -> np.ndarray:
        """Embeddings of ``input_ids`` (int, shape (batch, seq)): float32 (batch, seq, hidden)."""
        cfg = self.config
        ids = np.asarray(input_ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu" or ids.shape[1] == 0:
            raise ValueError(f"input_ids must be a 2-D integer array (batch, seq_len ≥ 1), got shape {ids.shape} "
                             f"dtype {ids.dtype}")
        if ids.shape[1] > cfg.max_position_embeddings:
            raise ValueError(f"input_ids has seq_len={ids.shape[1]}; it must be <= max_position_embeddings="
                             f"{cfg.max_position_embeddings}")
        if ids.min() < 0 or ids.max() >= cfg.vocab_size:
            raise ValueError(f"input_ids must lie in [0, {cfg.vocab_size}), got [{ids.min()}, {ids.max()}]")
        return self._embed[ids]

    def block(self, i: int, h: np.ndarray, on_input: Callable[[str, np.ndarray], None] | None = None) -> np.ndarray:
        """Decoder block ``i`` applied to hidden states ``h`` (float32, (batch, seq, hidden)); see :func:`decoder_block`."""
        return decoder_block(self.config, h, self._norms, self._linears, f"model.layers.{i}.", on_input)

    def head(self, h: np.ndarray) -> np.ndarray:
        """Logits from the last hidden states: float32 (batch, seq, vocab)."""
        x = rms_norm(h, self._norms["model.norm"], self.config.rms_norm_eps)
        return (x @ self._head.T).astype(np.float32, copy=False)

    def forward(self, input_ids: Any) -> np.ndarray:
        """Next-token logits.

        Parameters
        ----------
        input_ids : ndarray of int, shape (batch, seq_len)
            Every sequence starts at position 0 (no padding, no cache).

        Returns
        -------
        ndarray of float32, shape (batch, seq_len, vocab_size)
            ``logits[b, t]`` scores the token at ``t + 1`` given tokens ``0..t``.
        """
        h = self.embed(input_ids)
        for i in range(self.config.num_hidden_layers):
            h = self.block(i, h)
        return self.head(h)

    __call__ = forward


def decoder_block(cfg: LlamaConfig, h: np.ndarray, norms: Mapping[str, np.ndarray], linears: Mapping[str, Any],
                  prefix: str = "", on_input: Callable[[str, np.ndarray], None] | None = None) -> np.ndarray:
    """One decoder layer (``LlamaDecoderLayer``): ``h + o_proj(attn(RMSNorm(h)))``, then ``+ mlp(RMSNorm(.))``.

    Parameters
    ----------
    cfg : LlamaConfig
    h : ndarray of float32, shape (batch, seq, hidden)
    norms : mapping
        ``prefix + "input_layernorm"`` and ``prefix + "post_attention_layernorm"`` weights, float32 (hidden,).
    linears : mapping
        ``prefix + name`` for each of :data:`BLOCK_LINEARS`: callables ``(tokens, in) -> (tokens, out)``
        (:class:`~refquant.model.linear.Linear` or a quantized one).
    prefix : str
        ``"model.layers.{i}."`` in a :class:`CausalLM`; ``""`` for one layer's own mapping.
    on_input : callable, optional
        ``on_input(name, x)`` is called before each projection with its name (from
        :data:`BLOCK_LINEARS`) and its input ``x`` (float32, (tokens, in)); the projections of
        one group of :data:`BLOCK_INPUTS` receive the same array. Calibration (GPTQ Hessians,
        AWQ statistics) reads the inputs this way.

    Returns
    -------
    ndarray of float32, shape (batch, seq, hidden)
    """
    batch, seq, hidden = h.shape
    heads, kv_heads, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim

    def lin(name: str, x: np.ndarray) -> np.ndarray:
        if on_input is not None:
            on_input(name, x)
        return _call(linears[prefix + name], x)

    def split(y: np.ndarray, n: int) -> np.ndarray:  # (tokens, n·d) -> (batch, n, seq, d)
        # contiguous, so that the batched matmuls below go to BLAS rather than NumPy's generic loop
        return np.ascontiguousarray(y.reshape(batch, seq, n, d).transpose(0, 2, 1, 3))

    x = rms_norm(h, norms[prefix + "input_layernorm"], cfg.rms_norm_eps).reshape(-1, hidden)
    cos, sin = rotary_cos_sin(np.arange(seq), d, cfg.rope_theta)
    q = apply_rotary(split(lin("self_attn.q_proj", x), heads), cos, sin)
    k = apply_rotary(split(lin("self_attn.k_proj", x), kv_heads), cos, sin)
    v = split(lin("self_attn.v_proj", x), kv_heads)
    k = np.repeat(k, heads // kv_heads, axis=1)  # repeat_kv: query head j reads kv head j // group
    v = np.repeat(v, heads // kv_heads, axis=1)
    scores = np.matmul(q, np.ascontiguousarray(k.transpose(0, 1, 3, 2))) * np.float32(d ** -0.5)
    offset = np.arange(seq)[:, None] - np.arange(seq)[None, :]  # query i - key j
    hidden_keys = offset < 0
    if cfg.sliding_window is not None:
        hidden_keys |= offset >= cfg.sliding_window
    scores = np.where(hidden_keys, np.float32(-np.inf), scores)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs = scores / scores.sum(axis=-1, keepdims=True)
    context = np.matmul(probs, v).transpose(0, 2, 1, 3).reshape(-1, heads * d)
    h = h + lin("self_attn.o_proj", context).reshape(batch, seq, hidden)
    x = rms_norm(h, norms[prefix + "post_attention_layernorm"], cfg.rms_norm_eps).reshape(-1, hidden)
    gated = silu(lin("mlp.gate_proj", x)) * lin("mlp.up_proj", x)
    return h + lin("mlp.down_proj", gated).reshape(batch, seq, hidden)


def _call(layer: Any, x: np.ndarray) -> np.ndarray:
    y = layer(x)
    return y if y.dtype == np.float32 else y.astype(np.float32)


def _f32(a: Any) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)
