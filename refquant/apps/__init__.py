"""The applications built on the reference: the ``refquant`` command line and its reports.

``cli`` (the ``refquant`` console script and ``python -m refquant``), ``report`` (per-scheme
fidelity on a real model), ``lm_report`` (every method through a causal LM, by perplexity) and
``evaluate`` (layer reconstruction error per algorithm) and ``quantize`` (``refquant quantize``:
:mod:`refquant.checkpoint` on a chosen backend). They use the reference and the
backends; the core (every other module of ``refquant``) never imports them, ``accel`` or
``conformance``.
"""
