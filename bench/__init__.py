"""The benchmark suite (`python -m bench`); see bench/__main__.py."""

import os

# As the search service runs (fashion_search/__init__.py): numpy's OpenBLAS on one thread. The suite imports
# numpy before the package, so the package's own default would come too late here.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
