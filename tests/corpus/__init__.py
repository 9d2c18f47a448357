"""The bad-input corpus (make_corpus.py writes it; tests/test_corpus.py sends it)."""
