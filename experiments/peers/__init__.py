"""The peer benchmark: the same SSL job through frossl_lit, lightly and stable-pretraining (bench.py)."""
