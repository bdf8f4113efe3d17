"""What the infra tests share: the repository, cdk.json's context, and a production-like override."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from infra.stack import FashionSearchStack

REPO = Path(__file__).resolve().parents[2]
CDK_CONTEXT: dict[str, object] = json.loads((REPO / "cdk.json").read_text())["context"]

# A production-like stage: cross-origin API, extra origins, concurrency and non-default sizes.
CROSS_ORIGIN = {
    "stage": "prod",
    "sameOriginApi": "false",
    "allowedOrigins": "https://shop.example.com, http://localhost:5173",
    "searchMemoryMb": "3008",
    "builderMemoryMb": "10240",
    "reservedConcurrency": "20",
    "provisionedConcurrency": "2",
    "throttleRate": "20",
    "throttleBurst": "40",
    "reindexSchedule": "cron(0 3 * * ? *)",
    "catalogUrl": "https://fakestoreapi.com/products",
    "catalogLimit": "100",
    "buildConcurrency": "50",
    "buildChunkSize": "5000",
}

Synth = Callable[..., FashionSearchStack]
