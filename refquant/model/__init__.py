"""A NumPy BERT/MiniLM sentence encoder, for measuring what quantization does to a real model.

``Encoder.from_pretrained(model_dir)`` loads a sentence-transformers folder (``model.safetensors``
read lazily with ``safe_open``, ``tokenizer.json`` through ``tokenizers``: the optional ``model``
extra); ``.encode(sentences)`` returns float32 (n, dim) embeddings pooled and normalized as the
folder says. Its dense layers are :mod:`refquant.model.linear` objects that :mod:`refquant.ptq`
replaces with quantized ones.
"""

from __future__ import annotations

from refquant.model.encoder import Encoder, EncoderConfig
from refquant.model.linear import Linear

__all__ = ["Encoder", "EncoderConfig", "Linear"]
