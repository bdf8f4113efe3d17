"""The model: a bundle (text and image towers, tokenizer, calibration), the embedder that runs it, and
the safe decoding of the images it is fed. Both paths use it; it imports nothing of ours but errors."""
