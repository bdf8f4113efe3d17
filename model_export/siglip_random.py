"""Randomly initialised SigLIP checkpoints, shaped like hub downloads, for offline export tests and latency
measurements (hub checkpoints and tokenizer files are not reachable here).

The vocabulary is a small SentencePiece Unigram model trained here with SigLIP's conventions (<pad> 0,
</s> 1, <unk> 2, no <s>, nmt_nfkc normalisation, dummy prefix): the same code paths as google/siglip's
32,000-piece `spiece.model`, a smaller table.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

_CORPUS = (
    "a photo of a red dress navy blue shirt for men black leather shoes gold watch for women crimson gown "
    "white sneakers denim jeans casual cotton t-shirt striped kurta handbag sandals sunglasses backpack "
    "wallet belt socks heels flats sports shoes track pants shorts jacket silver summer winter formal"
)


def sentencepiece_model(vocab_size: int = 160) -> bytes:
    """A SigLIP-style SentencePiece Unigram model (serialized), trained on a few fashion words."""
    import sentencepiece as spm

    words = _CORPUS.split()
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([_CORPUS] * 50 + words), model_writer=model, vocab_size=vocab_size,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
        character_coverage=1.0, num_threads=1, minloglevel=2)
    return model.getvalue()


def save_siglip_tokenizer(folder: Path) -> int:
    """Write spiece.model and a SiglipTokenizer config to `folder`; returns the vocabulary size."""
    from transformers import SiglipTokenizer

    (folder / "spiece.model").write_bytes(sentencepiece_model())
    tokenizer = SiglipTokenizer(vocab_file=str(folder / "spiece.model"))
    tokenizer.save_pretrained(str(folder))
    return int(tokenizer.vocab_size)


def make_random_siglip(folder: str | Path, *, tiny: bool = True, seed: int = 0) -> Path:
    """Save a random SiglipModel, its SentencePiece tokenizer and processor config to `folder`.

    tiny: a two-layer model for tests (32x32 images, 32-d); otherwise SiglipConfig's defaults, the
    architecture of google/siglip-base-patch16-224 (ViT-B/16 at 224, 768-d, 32,000-token vocabulary).
    The processor is saved by SiglipProcessor.save_pretrained, so transformers 5 writes processor_config.json.
    """
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor, SiglipTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = save_siglip_tokenizer(folder)
    ids = {"pad_token_id": 1, "eos_token_id": 1, "bos_token_id": None}
    if tiny:
        config = SiglipConfig(
            text_config={"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                         "num_attention_heads": 2, "max_position_embeddings": 64, "projection_size": 32, **ids},
            vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                           "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        )
    else:
        config = SiglipConfig(text_config=ids)
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    model.save_pretrained(str(folder))
    size = config.vision_config.image_size
    processor = SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": size, "width": size}),
                                tokenizer=SiglipTokenizer(vocab_file=str(folder / "spiece.model")))
    processor.save_pretrained(str(folder))
    return folder
