"""Lambda entry point of the search API: a thin adapter over fashion_search.

The model and the live index load here, in the init phase (full CPU, before the first request),
from FASHION_SEARCH_STORE and FASHION_SEARCH_MODEL. If no index can be served yet the function still
starts: requests get a 503 that says why, and the service keeps checking for a version.
"""

from fashion_search.config import ServiceSettings
from fashion_search.http.api import create_handler
from fashion_search.serve.service import SearchService

handler = create_handler(SearchService(ServiceSettings.from_env()))
