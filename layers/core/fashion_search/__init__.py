"""fashion-search: serverless cross-modal product search (the core package, shared by every entry point)."""

import os

# numpy's OpenBLAS on one thread, unless the environment says otherwise (read when numpy loads, so it is set
# before any module of ours imports numpy). A query's products are small (a few hundred vectors by one): on
# 2 cores, waking OpenBLAS's threads made a 1,000 x 896 product take 6 ms instead of 0.14 ms.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
