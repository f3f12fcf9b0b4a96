"""The external kNN memory: a ring buffer per (lane, head) and the searches over it."""
