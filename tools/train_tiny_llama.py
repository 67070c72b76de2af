"""Train ``models/refquant-tiny-llama``: a small LLaMA-architecture causal LM made by the project.

No package on the index ships a small causal LM's weights, so refquant trains its own, once, on
text every machine has offline: the Python standard library's own sources. Run from the
repository root (torch on the CPU, one thread, fixed seeds)::

    python tools/train_tiny_llama.py            # writes models/refquant-tiny-llama/

Corpus and splits (deterministic, documented in the folder's README.md)
----------------------------------------------------------------------
- the files ``<stdlib>/*.py`` (the top level of ``sysconfig.get_paths()["stdlib"]`` only, no
  sub-packages), sorted by file name, read as UTF-8 (undecodable bytes replaced);
- file ``i`` in that order goes to the **held-out** split when ``i % 10 == 9``, to the
  **calibration** split when ``i % 10 == 8``, and to **training** otherwise: splits are whole
  files, so no function is seen by training and then scored;
- the held-out and calibration texts are written next to the model (``heldout.txt``,
  ``calibration.txt``; each file preceded by a ``# ---- <name> ----`` line), so perplexity is
  measured on the same text on every machine whatever its Python version.

Tokenizer: byte-level BPE trained with ``tokenizers`` on the training split (vocabulary 2048,
special tokens ``<s>`` ``</s>``, no normalizer), saved as ``tokenizer.json``.

Model (Hugging Face ``LlamaForCausalLM`` layout and parameter names, so ``transformers`` and any
LLaMA reader load it): hidden 256, 4 layers, 8 query heads and 4 key/value heads (grouped-query
attention, head_dim 32), SwiGLU MLP of 768, RMSNorm eps 1e-5, rotary embeddings (theta 10000,
the rotate-half convention of ``modeling_llama.py``), untied 2048-word embedding and LM head,
4.2 M parameters, stored float32 (16.8 MB). Every matrix's row length is a multiple of 256, so
every GGUF k-quant applies to every tensor.

Training: random windows of 257 tokens of the training token stream (a ``torch.Generator`` with
seed 0), batch 8, AdamW (β = 0.9, 0.95; weight decay 0.1 on matrices), learning rate 3e-3 with
50 warm-up steps and cosine decay to 3e-4, gradient clipping at 1.0, ``STEPS`` = 600 steps
(1.2 M tokens, about one pass over the training split).

The shipped model took 1573 s of wall time (torch 2.13 CPU, Python 3.11.7) on a 2-core AMD EPYC
machine shared with other jobs (load ≈ 10); a step takes 1.2 s on an idle core, so about
12 minutes. Final losses (16 windows of 256 tokens): train 3.487, held-out 4.102 nats/token.
Bit-identical retraining is not promised across torch versions or CPUs (float summation
order); the shipped weights are the reference.
"""

from __future__ import annotations

import json
import math
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

OUT = Path(__file__).resolve().parents[1] / "models" / "refquant-tiny-llama"

VOCAB = 2048
HIDDEN = 256
LAYERS = 4
HEADS = 8
KV_HEADS = 4
INTERMEDIATE = 768
CONTEXT = 256
EPS = 1e-5
THETA = 10000.0
SEED = 0
BATCH = 8
STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 600
LR, LR_MIN, WARMUP = 3e-3, 3e-4, 50


def corpus() -> dict[str, list[tuple[str, str]]]:
    """The standard library's top-level ``*.py`` files split into train / calibration / heldout."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"), key=lambda p: p.name)
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "calibration": [], "heldout": []}
    for i, path in enumerate(files):
        split = "heldout" if i % 10 == 9 else "calibration" if i % 10 == 8 else "train"
        splits[split].append((path.name, path.read_bytes().decode("utf-8", errors="replace")))
    return splits


def joined(files: list[tuple[str, str]]) -> str:
    return "".join(f"# ---- {name} ----\n{text}\n" for name, text in files)


def train_tokenizer(text: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer=trainer)
    return tok


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS))


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        d = HIDDEN // HEADS
        self.q_proj = nn.Linear(HIDDEN, HEADS * d, bias=False)
        self.k_proj = nn.Linear(HIDDEN, KV_HEADS * d, bias=False)
        self.v_proj = nn.Linear(HIDDEN, KV_HEADS * d, bias=False)
        self.o_proj = nn.Linear(HEADS * d, HIDDEN, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        d = HIDDEN // HEADS
        q = self.q_proj(x).view(b, t, HEADS, d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, KV_HEADS, d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, KV_HEADS, d).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(HEADS // KV_HEADS, dim=1)
        v = v.repeat_interleave(HEADS // KV_HEADS, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, HIDDEN))


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(HIDDEN, INTERMEDIATE, bias=False)
        self.up_proj = nn.Linear(HIDDEN, INTERMEDIATE, bias=False)
        self.down_proj = nn.Linear(INTERMEDIATE, HIDDEN, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(HIDDEN)
        self.self_attn = Attention()
        self.post_attention_layernorm = RMSNorm(HIDDEN)
        self.mlp = MLP()

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm = RMSNorm(HIDDEN)


class TinyLlama(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = Body()
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)
        d = HIDDEN // HEADS
        inv_freq = 1.0 / THETA ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
        ang = torch.outer(torch.arange(CONTEXT, dtype=torch.float32), inv_freq)
        emb = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, ids):
        t = ids.shape[1]
        cos, sin = self.cos[:t], self.sin[:t]
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.model.norm(x))


def init_weights(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        if p.ndim == 2:
            std = 0.02 / math.sqrt(2 * LAYERS) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
            nn.init.normal_(p, std=std)


def lr_at(step: int) -> float:
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    frac = (step - WARMUP) / max(1, STEPS - WARMUP)
    return LR_MIN + 0.5 * (LR - LR_MIN) * (1 + math.cos(math.pi * frac))


@torch.no_grad()
def mean_loss(model: nn.Module, ids: torch.Tensor, windows: int = 16) -> float:
    n = (len(ids) - 1) // CONTEXT
    starts = torch.linspace(0, (n - 1) * CONTEXT, min(windows, n)).long()
    x = torch.stack([ids[s:s + CONTEXT] for s in starts])
    y = torch.stack([ids[s + 1:s + CONTEXT + 1] for s in starts])
    return F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1)).item()


def main() -> int:
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    splits = corpus()
    texts = {k: joined(v) for k, v in splits.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(texts["train"])
    tok.save(str(OUT / "tokenizer.json"))
    ids = {k: torch.tensor(tok.encode(t).ids, dtype=torch.long) for k, t in texts.items()}
    print({k: len(v) for k, v in ids.items()}, "tokens", flush=True)

    model = TinyLlama()
    init_weights(model)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.ndim == 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(SEED)
    train = ids["train"]
    t0 = time.time()
    for step in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        starts = torch.randint(0, len(train) - CONTEXT - 1, (BATCH,), generator=gen)
        x = torch.stack([train[s:s + CONTEXT] for s in starts])
        y = torch.stack([train[s + 1:s + CONTEXT + 1] for s in starts])
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == STEPS - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  lr {lr_at(step):.2e}  {time.time() - t0:7.1f} s", flush=True)
    seconds = time.time() - t0
    model.eval()
    final = {"train_loss": mean_loss(model, train), "heldout_loss": mean_loss(model, ids["heldout"])}
    print(final, f"{seconds:.0f} s", flush=True)

    from safetensors.torch import save_file
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(OUT / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "head_dim": HIDDEN // HEADS, "hidden_act": "silu", "max_position_embeddings": CONTEXT,
        "rms_norm_eps": EPS, "rope_theta": THETA, "rope_scaling": None, "attention_bias": False,
        "mlp_bias": False, "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1,
        "torch_dtype": "float32", "initializer_range": 0.02,
    }
    (OUT / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (OUT / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
         "model_max_length": CONTEXT}, indent=2) + "\n")
    (OUT / "heldout.txt").write_text(texts["heldout"], encoding="utf-8")
    (OUT / "calibration.txt").write_text(texts["calibration"], encoding="utf-8")
    (OUT / "training.json").write_text(json.dumps({
        "python": sys.version.split()[0], "torch": torch.__version__, "stdlib": sysconfig.get_paths()["stdlib"],
        "files": {k: [name for name, _ in v] for k, v in splits.items()},
        "tokens": {k: len(v) for k, v in ids.items()}, "parameters": n_params,
        "steps": STEPS, "batch": BATCH, "context": CONTEXT, "seed": SEED, "threads": 1,
        "seconds": round(seconds, 1), **{k: round(v, 4) for k, v in final.items()},
    }, indent=2) + "\n")
    print(f"wrote {OUT} ({n_params} parameters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
