"""Checkpoint layouts: how quantized tensors are laid out in other tools' files
(GPTQ v1/v2, AWQ GEMM, bitsandbytes quant_state), converted to and from refquant's
containers."""
