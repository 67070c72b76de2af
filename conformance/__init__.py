"""conformance: property tests that check any refquant backend against the reference.

Run ``python -m conformance --backend NAME`` (or ``module:factory``) for the op x format
matrix, or ``pytest --pyargs conformance --backend NAME`` for plain pytest output.
"""
