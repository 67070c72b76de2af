"""A NumPy forward pass of a BERT-style sentence encoder (all-MiniLM-L6-v2 and its kin).

It exists to measure what quantization does to a real model: every dense projection is a
:class:`refquant.model.linear.Linear` that :mod:`refquant.ptq` can swap for a quantized one.

The computation follows Hugging Face ``transformers``' ``BertModel`` (``modeling_bert.py``:
``BertEmbeddings``, ``BertSelfAttention`` with ``eager_attention_forward``, ``BertSelfOutput``,
``BertIntermediate``, ``BertOutput``) followed by sentence-transformers' ``Pooling`` and
``Normalize`` modules, in float32:

====================  =============================================================================
step                  rule
====================  =============================================================================
embeddings            word[ids] + position[0..L) + token_type[type_ids], then LayerNorm
self-attention        q, k, v = Linear(h); softmax(q kᵀ / sqrt(head_dim) + mask) v, per head
attention output      LayerNorm(Linear(context) + h)
feed-forward          LayerNorm(Linear(gelu(Linear(h))) + h), gelu exact: x/2 · (1 + erf(x/√2))
LayerNorm             (x − mean) / sqrt(var + eps) · γ + β, biased variance, eps = layer_norm_eps
pooling               per ``1_Pooling/config.json``: mean over real tokens (clamped count ≥ 1e-9),
                      CLS, max, or mean·sqrt(len); modes concatenated in sentence-transformers' order
normalize             x / max(‖x‖₂, 1e-12) when ``modules.json`` lists ``Normalize``
====================  =============================================================================

Padding tokens never enter a linear layer: hidden states are kept *packed* as (tokens, hidden) for
the real tokens only, and spread out to (batch, seq, ...) just for attention, whose padded keys are
masked with −inf. Real tokens get exactly what the padded computation gives them, while
calibration observers and per-tensor dynamic scales see only real activations.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import erf

from refquant.model.linear import Linear, _check_replacements

__all__ = ["EncoderConfig", "Encoder", "layer_norm", "gelu"]

_POOLING_ORDER = ("cls", "max", "mean", "mean_sqrt_len_tokens")  # sentence-transformers' concatenation order


@dataclass(frozen=True)
class EncoderConfig:
    """The fields of a BERT ``config.json`` the forward pass uses, plus pooling/normalization.

    Attributes
    ----------
    hidden_size, num_hidden_layers, num_attention_heads, intermediate_size : int
    layer_norm_eps : float
    max_position_embeddings, type_vocab_size, vocab_size, pad_token_id : int
    pooling : tuple of str
        Pooling modes among ``"cls"``, ``"max"``, ``"mean"``, ``"mean_sqrt_len_tokens"``,
        concatenated in that order (sentence-transformers' ``Pooling``).
    normalize : bool
        L2-normalize the pooled vector (sentence-transformers' ``Normalize`` module).
    """

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    layer_norm_eps: float = 1e-12
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    vocab_size: int = 30522
    pad_token_id: int = 0
    pooling: tuple[str, ...] = ("mean",)
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be a multiple of "
                             f"num_attention_heads={self.num_attention_heads}")
        bad = [p for p in self.pooling if p not in _POOLING_ORDER]
        if bad or not self.pooling:
            raise ValueError(f"pooling={self.pooling!r} is not supported; allowed modes: {', '.join(_POOLING_ORDER)}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_folder(cls, model_dir: str | Path) -> "EncoderConfig":
        """Read ``config.json``, ``modules.json`` and the pooling config of a sentence-transformers folder."""
        model_dir = Path(model_dir)
        cfg = json.loads((model_dir / "config.json").read_text())
        model_type = cfg.get("model_type", "bert")
        if model_type not in ("bert",):
            raise ValueError(f"config.json model_type={model_type!r} is not supported; allowed: 'bert'")
        act = cfg.get("hidden_act", "gelu")
        if act != "gelu":
            raise ValueError(f"config.json hidden_act={act!r} is not supported; allowed: 'gelu' (exact, erf)")
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"config.json position_embedding_type={cfg['position_embedding_type']!r} is not "
                             "supported; allowed: 'absolute'")
        pooling, normalize = _read_sentence_transformers_modules(model_dir)
        return cls(
            hidden_size=int(cfg["hidden_size"]),
            num_hidden_layers=int(cfg["num_hidden_layers"]),
            num_attention_heads=int(cfg["num_attention_heads"]),
            intermediate_size=int(cfg["intermediate_size"]),
            layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 512)),
            type_vocab_size=int(cfg.get("type_vocab_size", 2)),
            vocab_size=int(cfg.get("vocab_size", 30522)),
            pad_token_id=int(cfg.get("pad_token_id", 0) or 0),
            pooling=pooling,
            normalize=normalize,
        )


def _read_sentence_transformers_modules(model_dir: Path) -> tuple[tuple[str, ...], bool]:
    """Pooling modes and whether to normalize, from ``modules.json`` (mean pooling, no normalize if absent)."""
    modules_path = model_dir / "modules.json"
    if not modules_path.is_file():
        return ("mean",), False
    modules = json.loads(modules_path.read_text())
    pooling: tuple[str, ...] = ("mean",)
    normalize = False
    for module in modules:
        kind = module.get("type", "").rsplit(".", 1)[-1]
        if kind == "Pooling":
            pooling = _read_pooling_config(model_dir / module.get("path", ""))
        elif kind == "Normalize":
            normalize = True
        elif kind not in ("Transformer",):
            raise ValueError(f"modules.json lists module type={module.get('type')!r}, which refquant.model does "
                             "not implement; supported: Transformer, Pooling, Normalize")
    return pooling, normalize


def _read_pooling_config(pool_dir: Path) -> tuple[str, ...]:
    cfg_path = pool_dir / "config.json"
    if not cfg_path.is_file():
        return ("mean",)
    cfg = json.loads(cfg_path.read_text())
    if isinstance(cfg.get("pooling_mode"), str):  # newer sentence-transformers spelling
        modes = {cfg["pooling_mode"]: True}
    else:
        modes = {
            "cls": cfg.get("pooling_mode_cls_token", False),
            "max": cfg.get("pooling_mode_max_tokens", False),
            "mean": cfg.get("pooling_mode_mean_tokens", False),
            "mean_sqrt_len_tokens": cfg.get("pooling_mode_mean_sqrt_len_tokens", False),
        }
        for extra in ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"):
            if cfg.get(extra):
                raise ValueError(f"1_Pooling/config.json {extra}=true is not supported; allowed modes: "
                                 f"{', '.join(_POOLING_ORDER)}")
    chosen = tuple(m for m in _POOLING_ORDER if modes.get(m))
    unknown = [m for m, on in modes.items() if on and m not in _POOLING_ORDER]
    if unknown or not chosen:
        raise ValueError(f"pooling mode {unknown or modes!r} is not supported; allowed: {', '.join(_POOLING_ORDER)}")
    return chosen


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis with the biased variance (``torch.nn.LayerNorm``).

    Parameters
    ----------
    x : ndarray of float32, shape (..., hidden)
    gamma, beta : ndarray of float32, shape (hidden,)
    eps : float
        Added to the variance (``layer_norm_eps`` of the config; 1e-12 for BERT).
    """
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=-1, keepdims=True)
    return (centered / np.sqrt(var + np.float32(eps)) * gamma + beta).astype(np.float32, copy=False)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x/2 · (1 + erf(x/√2)): BERT's ``hidden_act="gelu"`` (``torch.nn.functional.gelu``).

    Parameters
    ----------
    x : ndarray of float32, any shape
        Any values.
    """
    return (np.float32(0.5) * x * (np.float32(1.0) + erf(x * np.float32(1.0 / np.sqrt(2.0))))).astype(np.float32, copy=False)


class _LazySafetensors(Mapping):
    """Tensors of a ``model.safetensors`` file read one at a time with ``safe_open`` (NumPy framework).

    Nothing is read until a tensor is asked for, so unused tensors (the pooler, ``position_ids``)
    never leave the disk. A key prefix such as ``bert.`` is stripped.
    """

    def __init__(self, path: Path) -> None:
        try:
            from safetensors import safe_open
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("refquant.model needs the 'safetensors' package: pip install 'refquant[model]'") from exc
        self._path = path
        self._safe_open = safe_open
        with safe_open(str(path), framework="numpy") as f:
            keys = list(f.keys())
        anchor = "embeddings.word_embeddings.weight"
        prefix = next((k[: -len(anchor)] for k in keys if k.endswith(anchor)), None)
        if prefix is None:
            raise ValueError(f"{path} has no '{anchor}' tensor: not a BERT checkpoint")
        self._names = {k[len(prefix):]: k for k in keys if k.startswith(prefix)}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(f"{self._path} has no tensor {name!r}")
        with self._safe_open(str(self._path), framework="numpy") as f:
            t = f.get_tensor(self._names[name])
        return np.ascontiguousarray(t, dtype=np.float32)

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class Encoder:
    """A BERT-style sentence encoder in NumPy whose dense layers can be replaced by quantized ones.

    Build one with :meth:`from_pretrained` (a sentence-transformers folder) or directly from a
    config and a mapping of tensors named as in Hugging Face's ``BertModel`` state dict.

    Parameters
    ----------
    config : EncoderConfig
    weights : mapping of str to ndarray
        ``embeddings.*`` and ``encoder.layer.{i}.*`` tensors (``BertModel`` names, no prefix).
    tokenizer : callable, optional
        Sentences -> :class:`refquant.model.tokenize.Batch`; needed by :meth:`encode` only.
    """

    def __init__(self, config: EncoderConfig, weights: Mapping[str, np.ndarray], tokenizer: Any = None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        w = weights
        self._emb = {
            "word": _f32(w["embeddings.word_embeddings.weight"]),
            "position": _f32(w["embeddings.position_embeddings.weight"]),
            "token_type": _f32(w["embeddings.token_type_embeddings.weight"]),
            "ln_gamma": _f32(w["embeddings.LayerNorm.weight"]),
            "ln_beta": _f32(w["embeddings.LayerNorm.bias"]),
        }
        self._norms: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._linears: dict[str, Linear] = {}
        for i in range(config.num_hidden_layers):
            p = f"encoder.layer.{i}."
            for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                         "attention.output.dense", "intermediate.dense", "output.dense"):
                self._linears[p + name] = Linear(w[p + name + ".weight"], w[p + name + ".bias"])
            for name in ("attention.output.LayerNorm", "output.LayerNorm"):
                self._norms[p + name] = (_f32(w[p + name + ".weight"]), _f32(w[p + name + ".bias"]))

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> "Encoder":
        """Load a sentence-transformers folder (``config.json``, ``model.safetensors``, ``tokenizer.json``,
        ``modules.json``, ``1_Pooling/config.json``).

        Weights are read tensor by tensor with ``safetensors.safe_open``; the tokenizer and its
        length limit come from ``tokenizer.json`` and ``sentence_bert_config.json``.
        """
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"model_dir={str(model_dir)!r} is not a directory")
        for required in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (model_dir / required).is_file():
                raise FileNotFoundError(f"model_dir={str(model_dir)!r} has no {required}")
        from refquant.model.tokenize import Tokenizer

        config = EncoderConfig.from_folder(model_dir)
        weights = _LazySafetensors(model_dir / "model.safetensors")
        tokenizer = Tokenizer.from_folder(model_dir, max_position_embeddings=config.max_position_embeddings,
                                          pad_token_id=config.pad_token_id)
        return cls(config, weights, tokenizer)

    def other_parameter_bytes(self) -> int:
        """Bytes of the float32 parameters that are not linear layers (embeddings, LayerNorms)."""
        arrays = list(self._emb.values()) + [a for pair in self._norms.values() for a in pair]
        return int(sum(a.nbytes for a in arrays))

    def linears(self) -> dict[str, Linear]:
        """The replaceable dense layers by name (``encoder.layer.{i}.attention.self.query`` ...), in order."""
        return dict(self._linears)

    def with_linears(self, replacements: Mapping[str, Any]) -> "Encoder":
        """A new Encoder sharing every tensor with this one, with some linear layers replaced.

        Parameters
        ----------
        replacements : mapping of str to Linear-like
            Layer name -> a callable ``(tokens, in) -> (tokens, out)`` (any class of
            :mod:`refquant.model.linear`). Names must be those of :meth:`linears`.
        """
        _check_replacements(replacements, self._linears, "Encoder")
        new = object.__new__(Encoder)
        new.config, new.tokenizer = self.config, self.tokenizer
        new._emb, new._norms = self._emb, self._norms
        new._linears = {**self._linears, **replacements}
        return new

    # -- forward --------------------------------------------------------------------------------

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
                token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Last hidden states of the real tokens.

        Parameters
        ----------
        input_ids : ndarray of int, shape (batch, seq_len)
        attention_mask : ndarray of bool or int, shape (batch, seq_len), optional
            Non-zero for real tokens. Default: all real.
        token_type_ids : ndarray of int, shape (batch, seq_len), optional

        Returns
        -------
        ndarray of float32, shape (batch, seq_len, hidden)
            Hidden states; rows of padding tokens are zero.
        """
        cfg = self.config
        ids = np.asarray(input_ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"input_ids must be a 2-D integer array (batch, seq_len), got shape {ids.shape} "
                             f"dtype {ids.dtype}")
        batch, seq_len = ids.shape
        if seq_len > cfg.max_position_embeddings:
            raise ValueError(f"input_ids has seq_len={seq_len}; it must be <= max_position_embeddings="
                             f"{cfg.max_position_embeddings}")
        if ids.size and (ids.min() < 0 or ids.max() >= cfg.vocab_size):
            raise ValueError(f"input_ids must lie in [0, {cfg.vocab_size}), got [{ids.min()}, {ids.max()}]")
        mask = np.ones(ids.shape, bool) if attention_mask is None else np.asarray(attention_mask).astype(bool)
        types = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids)
        if mask.shape != ids.shape or types.shape != ids.shape:
            raise ValueError(f"attention_mask / token_type_ids must have input_ids' shape {ids.shape}, got "
                             f"{mask.shape} / {types.shape}")
        if not mask.any(axis=1).all():
            raise ValueError("attention_mask has a row without real tokens; each sequence needs at least one")
        b_idx, t_idx = np.nonzero(mask)  # packed real tokens, row-major
        e = self._emb
        h = e["word"][ids[b_idx, t_idx]] + e["position"][t_idx] + e["token_type"][types[b_idx, t_idx]]
        h = layer_norm(h, e["ln_gamma"], e["ln_beta"], cfg.layer_norm_eps)  # (tokens, hidden)
        for i in range(cfg.num_hidden_layers):
            h = self._layer(i, h, (batch, seq_len), b_idx, t_idx, mask)
        out = np.zeros((batch, seq_len, cfg.hidden_size), np.float32)
        out[b_idx, t_idx] = h
        return out

    def _layer(self, i: int, h: np.ndarray, shape: tuple[int, int], b_idx: np.ndarray, t_idx: np.ndarray,
               mask: np.ndarray) -> np.ndarray:
        cfg = self.config
        p = f"encoder.layer.{i}."
        lin = self._linears
        heads, dh = cfg.num_attention_heads, cfg.head_dim

        def spread(x: np.ndarray) -> np.ndarray:  # (tokens, hidden) -> (batch, heads, seq, head_dim)
            full = np.zeros((*shape, cfg.hidden_size), np.float32)
            full[b_idx, t_idx] = x
            return full.reshape(*shape, heads, dh).transpose(0, 2, 1, 3)

        q = spread(_call(lin[p + "attention.self.query"], h))
        k = spread(_call(lin[p + "attention.self.key"], h))
        v = spread(_call(lin[p + "attention.self.value"], h))
        scores = np.matmul(q, k.transpose(0, 1, 3, 2)) * np.float32(dh ** -0.5)  # (batch, heads, seq, seq)
        scores = np.where(mask[:, None, None, :], scores, np.float32(-np.inf))
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        context = np.matmul(probs, v).transpose(0, 2, 1, 3).reshape(*shape, cfg.hidden_size)[b_idx, t_idx]
        attn = _call(lin[p + "attention.output.dense"], context)
        h = layer_norm(attn + h, *self._norms[p + "attention.output.LayerNorm"], cfg.layer_norm_eps)
        inter = gelu(_call(lin[p + "intermediate.dense"], h))
        out = _call(lin[p + "output.dense"], inter)
        return layer_norm(out + h, *self._norms[p + "output.LayerNorm"], cfg.layer_norm_eps)

    def pool(self, hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Sentence vectors from hidden states, as the folder's Pooling (and Normalize) modules say.

        Parameters
        ----------
        hidden : ndarray of float32, shape (batch, seq_len, hidden)
        attention_mask : ndarray of bool, shape (batch, seq_len)

        Returns
        -------
        ndarray of float32, shape (batch, hidden · number of pooling modes)
        """
        m = np.asarray(attention_mask).astype(np.float32)[..., None]
        parts = []
        for mode in self.config.pooling:
            if mode == "cls":
                parts.append(hidden[np.arange(hidden.shape[0]), np.argmax(m[..., 0], axis=1)])
            elif mode == "max":
                parts.append(np.where(m > 0, hidden, np.float32(-np.inf)).max(axis=1))
            else:
                count = np.maximum(m.sum(axis=1), np.float32(1e-9))
                total = (hidden * m).sum(axis=1)
                parts.append(total / (count if mode == "mean" else np.sqrt(count)))
        pooled = np.concatenate(parts, axis=-1).astype(np.float32)
        if self.config.normalize:
            norm = np.linalg.norm(pooled, axis=-1, keepdims=True)
            pooled = pooled / np.maximum(norm, np.float32(1e-12))
        return pooled.astype(np.float32, copy=False)

    def encode(self, sentences: Sequence[str], batch_size: int = 32,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Sentence embeddings, as ``SentenceTransformer.encode`` gives them.

        Parameters
        ----------
        sentences : sequence of str
        batch_size : int
            Sentences per forward pass (results do not depend on it, except for layers whose
            activation scale is computed per tensor at run time).
        progress : callable, optional
            Called with the number of sentences finished after each batch.

        Returns
        -------
        ndarray of float32, shape (len(sentences), embedding_dim)
        """
        from refquant._validate import check_int

        if self.tokenizer is None:
            raise ValueError("this Encoder has no tokenizer; build it with Encoder.from_pretrained(model_dir) "
                             "or call forward(input_ids, attention_mask) and pool(...)")
        batch_size = check_int("batch_size", batch_size, min=1)
        if isinstance(sentences, str):
            raise TypeError("sentences must be a sequence of str, not one str; wrap it in a list")
        sentences = list(sentences)
        if not sentences:
            raise ValueError("sentences is empty; give at least one sentence")
        out = []
        for start in range(0, len(sentences), batch_size):
            batch = self.tokenizer(sentences[start:start + batch_size])
            hidden = self.forward(batch.input_ids, batch.attention_mask, batch.token_type_ids)
            out.append(self.pool(hidden, batch.attention_mask))
            if progress is not None:
                progress(min(start + batch_size, len(sentences)))
        return np.concatenate(out, axis=0)


def _call(layer: Any, x: np.ndarray) -> np.ndarray:
    y = layer(x)
    return y if y.dtype == np.float32 else y.astype(np.float32)


def _f32(a: Any) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)
