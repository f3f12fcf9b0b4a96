"""The Memorizing Transformer: local attention with XL cache, the kNN memory branch, the stack."""
