"""The build path: catalog sources -> fetch -> images -> embeddings -> index -> a published version.

It uses model/, index/ and store/, and never serve/ (a build runs where no search service does)."""
