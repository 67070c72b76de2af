"""NumPy models for measuring what quantization does to a real model: a BERT/MiniLM sentence
encoder and a LLaMA causal LM.

``Encoder.from_pretrained(model_dir)`` loads a sentence-transformers folder (``model.safetensors``
read lazily with ``safe_open``, ``tokenizer.json`` through ``tokenizers``: the optional ``model``
extra); ``.encode(sentences)`` returns float32 (n, dim) embeddings pooled and normalized as the
folder says. Its dense layers are :mod:`refquant.model.linear` objects that :mod:`refquant.ptq`
replaces with quantized ones.

``CausalLM.from_pretrained(model_dir)`` loads a Hugging Face LLaMA folder; ``.forward(ids)`` returns
next-token logits (:mod:`refquant.model.llama`), which :func:`refquant.metrics.perplexity` scores.
"""

from __future__ import annotations

from refquant.model.encoder import Encoder, EncoderConfig
from refquant.model.linear import Linear
from refquant.model.llama import CausalLM, LlamaConfig

__all__ = ["Encoder", "EncoderConfig", "Linear", "CausalLM", "LlamaConfig"]
