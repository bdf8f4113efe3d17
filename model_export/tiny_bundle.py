"""A tiny bundle with random weights, written with onnx.helper (no torch): for tests and mechanics.

Its image tower is a random projection of the downsampled pixels, so an image's nearest neighbour
is itself and similar pictures score higher; its text tower is a random bag of byte-level BPE
tokens. The vectors are otherwise meaningless: use the starter model for real search.

    python -m model_export.tiny_bundle --out /tmp/tiny
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from fashion_search.model.bundle import BundleSpec, ImageSpec, TextSpec, write_bundle_json

_CORPUS = " ".join([
    "men women boys girls unisex navy blue black white red green grey brown pink purple yellow",
    "shirt shirts tshirts jeans dress dresses shoes sandals watch watches handbag bag kurta top",
    "casual formal sports leather cotton denim gold silver summer winter fall spring",
])
_OPSET = [helper.make_opsetid("", 17)]


def _tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    return tok


def _text_model(vocab: int, dim: int, rng: np.random.Generator) -> onnx.ModelProto:
    """Masked mean of token embeddings, then a projection."""
    hidden = 48
    inits = [
        numpy_helper.from_array(rng.standard_normal((vocab, hidden)).astype(np.float32), "emb"),
        numpy_helper.from_array(rng.standard_normal((hidden, dim)).astype(np.float32), "proj"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis_last"),
    ]
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["tok"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis_last"], ["mask3"]),
        helper.make_node("Mul", ["tok", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["maskf", "axis1"], ["count"], keepdims=1),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "proj"], ["embeddings"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", dim])],
        inits,
    )
    return helper.make_model(graph, opset_imports=_OPSET)


def _image_model(size: int, dim: int, rng: np.random.Generator) -> onnx.ModelProto:
    """Average-pool 4x4, flatten, random projection."""
    features = 3 * (size // 4) ** 2
    inits = [
        numpy_helper.from_array(rng.standard_normal((features, dim)).astype(np.float32), "proj"),
        numpy_helper.from_array(np.array([0, features], dtype=np.int64), "flat_shape"),
    ]
    nodes = [
        helper.make_node("AveragePool", ["pixel_values"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Reshape", ["pooled", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "proj"], ["embeddings"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", dim])],
        inits,
    )
    return helper.make_model(graph, opset_imports=_OPSET)


def make_tiny_bundle(out: str | Path, *, dim: int = 32, image_size: int = 32, seed: int = 0,
                     name: str = "tiny-random") -> BundleSpec:
    """Write a sealed tiny bundle to `out` and return its spec. Same seed, same bundle hash."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tok = _tokenizer()
    tok.save(str(out / "tokenizer.json"))
    onnx.save(_text_model(tok.get_vocab_size(), dim, rng), out / "text.onnx")
    onnx.save(_image_model(image_size, dim, rng), out / "image.onnx")
    spec = BundleSpec(
        name=name,
        dim=dim,
        image=ImageSpec(height=image_size, width=image_size, resize="pad",
                        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        text=TextSpec(max_tokens=32, pad_id=0),
        info={"kind": "random weights, for tests", "seed": seed},
    )
    return write_bundle_json(out, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write the bundle to")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    spec = make_tiny_bundle(args.out, dim=args.dim, seed=args.seed)
    print(f"wrote {spec.name} ({spec.dim}-d, hash {spec.hash[:12]}) to {args.out}")


if __name__ == "__main__":
    main()
