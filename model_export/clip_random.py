"""A randomly initialised CLIP checkpoint folder, shaped like a hub download, for offline export tests
and latency measurements (hub checkpoints and tokenizer files are not reachable here).

The tokenizer is a small byte-level BPE in CLIP's style (lower-casing, `</w>` word ends,
<|startoftext|> ... <|endoftext|>, padding with <|endoftext|> as OpenAI's tokenizer does).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from model_export.clip_export import CLIP_MEAN, CLIP_STD

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_CORPUS = (
    "a photo of a red dress navy blue shirt for men black leather shoes gold watch for women "
    "crimson gown white sneakers denim jeans casual cotton t-shirt striped kurta handbag sandals "
    "sunglasses backpack wallet belt socks heels flats sports shoes track pants shorts jacket"
)


def clip_style_tokenizer(vocab_size: int = 600) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS], end_of_word_suffix="</w>",
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([_CORPUS] * 8, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, tok.token_to_id(BOS)), (EOS, tok.token_to_id(EOS))])
    return tok


def make_random_checkpoint(folder: str | Path, *, tiny: bool = True, seed: int = 0) -> Path:
    """Save a random CLIPModel, its tokenizer and preprocessor config to `folder`.

    tiny: a few-layer model for tests (32x32 images); otherwise the default CLIPConfig(), i.e. the
    ViT-B/32 architecture of openai/clip-vit-base-patch32 at 224x224.
    """
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    folder = Path(folder)
    tok = clip_style_tokenizer()
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    ids = {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": eos}
    if tiny:
        config = CLIPConfig(
            text_config={"vocab_size": tok.get_vocab_size(), "hidden_size": 32, "intermediate_size": 64,
                         "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 32, **ids},
            vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                           "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
            projection_dim=16,
        )
    else:
        config = CLIPConfig(text_config=ids)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(str(folder))
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS,
                            unk_token=EOS).save_pretrained(str(folder))
    size = config.vision_config.image_size
    preprocessor = {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "resample": 3,
                    "size": {"shortest_edge": size}, "do_center_crop": True,
                    "crop_size": {"height": size, "width": size}, "do_rescale": True, "rescale_factor": 1 / 255,
                    "do_normalize": True, "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD)}
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    return folder
