"""Long documents: named corpora, a stable split by document hash, and lanes that stream segments."""
