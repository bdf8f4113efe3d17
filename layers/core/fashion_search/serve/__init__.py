"""The query path: a query (query.py) -> embeddings -> the live index version -> ranked, fused hits.

It uses model/, index/, store/ and config, and never build/: a search function holds no builder."""
