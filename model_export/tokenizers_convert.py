"""Framework tokenizers -> one `tokenizers` tokenizer.json that the runtime runs as is.

The runtime only has `tokenizers` (no transformers, sentencepiece or ftfy), so whatever a framework does to
text before its vocabulary, it must be expressed here as normalizers, and checked: `check_parity` compares
the result with the framework's own ids on probe texts, and every export calls it.

- `sentencepiece_tokenizer`: a SentencePiece Unigram model (SigLIP's `spiece.model`) with SiglipTokenizer's
  clean-up (lower-case, drop ASCII punctuation, collapse whitespace) in front of SentencePiece's normaliser,
  which transformers' generic conversion leaves out.
- `open_clip_clean`: open_clip's text clean-ups ("canonicalize", "lower", "whitespace") as normalizers.
- `clip_bpe_tokenizer`: open_clip's SimpleTokenizer (OpenAI's BPE) as a byte-level BPE.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

# Python's string.punctuation (ASCII), as a regex character class.
_PUNCTUATION = "[" + re.escape(string.punctuation) + "]"
# The HTML entities html.unescape turns into the characters a catalog or a browser leaves behind.
_ENTITIES = {"&quot;": '"', "&#34;": '"', "&#39;": "'", "&apos;": "'", "&lt;": "<", "&gt;": ">", "&nbsp;": "\u00a0"}

# Texts every export checks against the framework's tokenizer (the tests check many more).
PROBE_TEXTS = (
    "red dress", "A photo of a NAVY-BLUE shirt, for men!", "gold watch", "x", "", "   ", "!!!",
    "women's black leather shoes with laces (size 7.5)", "t-shirt_slim fit", "Zürich café crème", "50% off",
    "striped  kurta \t and   sandals", " ".join(["long"] * 100),
)


def _whitespace_clean() -> list[normalizers.Normalizer]:
    """" ".join(text.split()): runs of whitespace to one space, none at the ends."""
    return [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]


def _ftfy_fixes() -> list[normalizers.Normalizer]:
    """ftfy.fix_text's character fixes, from ftfy's own tables: ligatures and full/half-width forms spelled
    out, curly quotes straightened, control characters dropped, NFC. Its mojibake repair is not replicated:
    it changes only text that was decoded with the wrong charset."""
    from ftfy import chardata

    steps: list[normalizers.Normalizer] = []
    for table in (chardata.LIGATURES, chardata.WIDTH_MAP):
        steps += [normalizers.Replace(chr(code), text) for code, text in sorted(table.items())]
    steps += [normalizers.Replace(Regex(chardata.DOUBLE_QUOTE_RE.pattern), '"'),
              normalizers.Replace(Regex(chardata.SINGLE_QUOTE_RE.pattern), "'")]
    control = "".join(re.escape(chr(code)) for code in sorted(chardata.CONTROL_CHARS))
    return [*steps, normalizers.Replace(Regex(f"[{control}]"), ""), normalizers.NFC()]


def _basic_clean() -> list[normalizers.Normalizer]:
    """open_clip's basic_clean (ftfy.fix_text, html.unescape twice, strip), as far as ordinary text goes."""
    steps = _ftfy_fixes()
    for _ in range(2):  # html.unescape(html.unescape(text)): "&amp;quot;" -> "&quot;" -> '"'
        steps += [normalizers.Replace(entity, char) for entity, char in _ENTITIES.items()]
        steps.append(normalizers.Replace("&amp;", "&"))
    return [*steps, normalizers.Strip()]


def open_clip_clean(kind: str) -> list[normalizers.Normalizer]:
    """open_clip's `clean` option of its tokenizers ("canonicalize" for its SigLIP configs)."""
    if kind == "whitespace":
        return [*_basic_clean(), *_whitespace_clean()]
    if kind == "lower":
        return [*_basic_clean(), *_whitespace_clean(), normalizers.Lowercase()]
    if kind == "canonicalize":  # big_vision's canonicalize_text: "_" to space, punctuation out, lower-case
        return [*_basic_clean(), normalizers.Replace("_", " "), normalizers.Replace(Regex(_PUNCTUATION), ""),
                normalizers.Lowercase(), *_whitespace_clean()]
    raise ValueError(f"unsupported open_clip text clean-up {kind!r}")


def siglip_clean(lower_case: bool = True) -> list[normalizers.Normalizer]:
    """SiglipTokenizer.canonicalize_text: lower-case, ASCII punctuation out ("_" too), whitespace collapsed."""
    steps: list[normalizers.Normalizer] = [normalizers.Lowercase()] if lower_case else []
    return [*steps, normalizers.Replace(Regex(_PUNCTUATION), ""), *_whitespace_clean()]


def prepend_normalizers(tokenizer: Tokenizer, steps: Sequence[normalizers.Normalizer]) -> Tokenizer:
    """Run `steps` before the tokenizer's own normaliser (on a copy)."""
    out = Tokenizer.from_str(tokenizer.to_str())
    own = [out.normalizer] if out.normalizer is not None else []
    out.normalizer = normalizers.Sequence([*steps, *own])
    return out


def sentencepiece_tokenizer(spm_file: str | Path, *, eos: str = "</s>", clean: Sequence[normalizers.Normalizer] = (),
                            special: Sequence[str] = ()) -> Tokenizer:
    """A SentencePiece Unigram model as SentencePiece encodes it (its normaliser spec followed), with `clean`
    first and `eos` appended. Needs protobuf (the export extra) to read the model file."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(Path(spm_file).read_bytes())
    if proto.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.UNIGRAM:
        raise ValueError(f"{spm_file}: only SentencePiece Unigram models are supported")
    vocab = [(piece.piece, piece.score) for piece in proto.pieces]
    tok = Tokenizer(models.Unigram(vocab, unk_id=proto.trainer_spec.unk_id,
                                   byte_fallback=proto.trainer_spec.byte_fallback))
    spec = proto.normalizer_spec
    steps = list(clean)
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:  # SentencePiece counts spaces only, not other whitespace
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="always" if spec.add_dummy_prefix else "never", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always" if spec.add_dummy_prefix else "never")
    control = [p.piece for p in proto.pieces if p.type == sentencepiece_model_pb2.ModelProto.SentencePiece.CONTROL]
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in dict.fromkeys([*control, *special])])
    eos_id = tok.token_to_id(eos)
    if eos_id is None:
        raise ValueError(f"{spm_file} has no {eos} piece")
    tok.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, eos_id)])
    return tok


# OpenAI CLIP's pre-tokenisation pattern (open_clip's SimpleTokenizer.pat, without the special tokens:
# user text is text).
_CLIP_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def clip_bpe_tokenizer(encoder: dict[str, int], merges: Sequence[tuple[str, str]], *, bos: str, eos: str,
                       clean: Sequence[normalizers.Normalizer]) -> Tokenizer:
    """OpenAI's CLIP BPE (open_clip's SimpleTokenizer): byte-level pieces with "</w>" word ends."""
    tok = Tokenizer(models.BPE(vocab=dict(encoder), merges=list(merges), end_of_word_suffix="</w>",
                               continuing_subword_prefix="", fuse_unk=False))
    tok.normalizer = normalizers.Sequence(list(clean))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_CLIP_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(bos, special=True), AddedToken(eos, special=True)])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, encoder[bos]), (eos, encoder[eos])])
    return tok


def fixed_length_ids(tokenizer: Tokenizer, texts: Sequence[str], length: int, pad_id: int) -> list[list[int]]:
    """What the runtime feeds a max_length bundle (Embedder's settings), for parity checks."""
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.enable_truncation(length)
    tok.enable_padding(pad_id=pad_id, length=length)
    tok.encode_special_tokens = True
    return [e.ids for e in tok.encode_batch(list(texts))]


def check_parity(ours: Callable[[Sequence[str]], list[list[int]]],
                 theirs: Callable[[Sequence[str]], list[list[int]]], texts: Sequence[str] = PROBE_TEXTS) -> None:
    """Refuse to write a bundle whose tokenizer gives other ids than the framework's on `texts`."""
    got, want = ours(texts), theirs(texts)
    for text, a, b in zip(texts, got, want, strict=True):
        if list(a) != list(b):
            raise ValueError(f"the converted tokenizer disagrees with the framework's on {text!r}: {a} vs {b}")
