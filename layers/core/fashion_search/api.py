"""The HTTP API as a Lambda handler for API Gateway HTTP API (v2) events, on powertools' resolver.

Every failure becomes a JSON error naming the problem: 4xx for what the caller can fix, 503 while
no index can be served, 500 (with the request id, traceback logged) for our own bugs.
"""

import base64
import binascii
import json
import re
import warnings
from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from . import __version__
from .images import ImageError
from .schemas import (
    MAX_IMAGE_BYTES,
    ErrorDetail,
    ErrorResponse,
    Health,
    Product,
    SearchRequest,
    SearchResponse,
    image_url,
    search_response,
)
from .service import EmptyQuery, NotReady, Query, SearchService

logger = Logger(service="fashion-search")
metrics = Metrics(namespace="FashionSearch", service="fashion-search")
tracer = Tracer(service="fashion-search")
copy_config_to_registered_loggers(source_logger=logger, include={"fashion_search"})
# Health checks and errors publish no metric: that is expected, not worth a warning per request.
warnings.filterwarnings("ignore", message="No application metrics to publish")

API = "/api/v1"
LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
_IMAGE_STATUS = {"too_large": 413, "unsupported_format": 415}
_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,", re.IGNORECASE)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def decode_image_field(value: str) -> bytes:
    """The request's base64 image (optionally a data: URL) as bytes, size-checked."""
    payload = _DATA_URL.sub("", value.strip(), count=1)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_image", "image is not valid base64") from None
    if not data:
        raise ApiError(400, "invalid_image", "image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ApiError(413, "image_too_large",
                       f"image is {len(data) / 2**20:.1f} MB; at most {MAX_IMAGE_BYTES // 2**20} MB is accepted")
    return data


def _field_message(field: str, error: dict[str, Any]) -> str:
    """One validation error in a shopper-developer's words, naming the field and the limit."""
    kind, ctx, value = error.get("type", ""), error.get("ctx") or {}, error.get("input")
    if kind == "string_too_long":
        return f"{field} is {len(value)} characters long; at most {ctx['max_length']} are accepted"
    if kind in ("less_than_equal", "greater_than_equal"):
        bound = "at most" if kind == "less_than_equal" else "at least"
        return f"{field} must be {bound} {ctx.get('le', ctx.get('ge'))} (got {value})"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{field} must be a whole number (got {json.dumps(value)})"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"{field} must be a finite number (got {json.dumps(value) if value == value else 'NaN'})"
    if kind == "string_type":
        return f"{field} must be a string (got {json.dumps(value)})"
    return f"{field}: {error.get('msg', 'invalid')}"


def _validation_message(exc: RequestValidationError) -> str:
    messages = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        if error.get("type") == "json_invalid":
            return "the request body is not valid JSON"
        if error.get("type") == "extra_forbidden":
            messages.append(f"unknown field {'.'.join(loc)!r}")
        elif error.get("type") == "model_attributes_type" or not loc:
            messages.append("the request body must be a JSON object")
        else:
            messages.append(_field_message(".".join(loc), error))
    return "; ".join(dict.fromkeys(messages)) or "invalid request"


def create_handler(service: SearchService) -> LambdaHandler:
    """The API over `service`, as a Lambda handler (the local server calls the same function)."""
    origins = service.settings.allowed_origins
    cors = CORSConfig(allow_origin=origins[0], extra_origins=list(origins[1:]), max_age=600) if origins else None
    app = APIGatewayHttpResolver(enable_validation=True, cors=cors)
    app.enable_swagger(path=f"{API}/docs", title="fashion-search API", version=__version__,
                       description="Cross-modal product search: text, photo, or both fused with a weight.")
    thumbnails = service.settings.thumbnail_base_url

    def error(status: int, code: str, message: str) -> Response:
        request_id = app.lambda_context.aws_request_id if app.lambda_context else None
        body = ErrorResponse(error=ErrorDetail(code=code, message=message), request_id=request_id)
        return Response(status, "application/json", body.model_dump_json(), headers={"Cache-Control": "no-store"})

    @app.post(f"{API}/search", summary="Search products by text, image, or both",
              responses={400: {"description": "Bad input"}, 413: {"description": "Image too large"},
                         415: {"description": "Unsupported image format"}, 503: {"description": "No index"}})
    @tracer.capture_method
    def search(request: Annotated[SearchRequest, Body()]) -> SearchResponse:
        image = decode_image_field(request.image) if request.image else None
        result = service.search(Query(text=request.text, image=image, alpha=request.alpha, top_k=request.top_k,
                                      collapse_duplicates=request.collapse_duplicates))
        metrics.add_metric(name="SearchLatency", unit=MetricUnit.Milliseconds, value=result.query_ms)
        metrics.add_metric(name="EmbeddingCacheHits", unit=MetricUnit.Count, value=result.cached)
        metrics.add_metric(name="EmbeddingCacheMisses", unit=MetricUnit.Count, value=result.encoded)
        metrics.add_metric(name=f"{result.search_type.capitalize()}Searches", unit=MetricUnit.Count, value=1)
        return search_response(result, thumbnails)

    @app.get(f"{API}/health", summary="Service status, live index version and model")
    def health() -> Health:
        return Health(**service.health())

    @app.get(f"{API}/products/<product_id>", summary="One product's metadata",
             responses={404: {"description": "Unknown product"}})
    def product(product_id: Annotated[str, Path(max_length=200)]) -> Product:
        found = service.product(product_id)
        if found is None:
            raise ApiError(404, "not_found", f"no product with id {product_id!r}")
        fields = {k: v for k, v in found.items() if k in Product.model_fields}
        return Product(**fields, image_url=image_url(found, thumbnails))

    @app.get(f"{API}/openapi.json", include_in_schema=False)
    def openapi():  # no return annotation: powertools cannot model a bare Response
        schema = app.get_openapi_json_schema(title="fashion-search API", version=__version__)
        return Response(200, "application/json", schema)

    @app.exception_handler([RequestValidationError, RequestUnsupportedContentType])
    def invalid_request(exc: RequestValidationError | RequestUnsupportedContentType) -> Response:
        content_type = app.current_event.headers.get("content-type", "")
        if app.current_event.body and content_type and not content_type.startswith("application/json"):
            return error(415, "unsupported_media_type",
                         f"send the request body as JSON (Content-Type: application/json), not {content_type}")
        return error(400, "invalid_request", _validation_message(exc))

    @app.exception_handler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return error(exc.status, exc.code, str(exc))

    @app.exception_handler(ImageError)
    def bad_image(exc: ImageError) -> Response:
        return error(_IMAGE_STATUS.get(exc.reason, 400), f"image_{exc.reason}", f"image: {exc}")

    @app.exception_handler(EmptyQuery)
    def empty_query(exc: EmptyQuery) -> Response:
        return error(400, "empty_query", str(exc))

    @app.exception_handler(NotReady)
    def not_ready(exc: NotReady) -> Response:
        return error(503, "index_unavailable", str(exc))

    @app.not_found
    def no_route(exc: NotFoundError) -> Response:
        event = app.current_event
        return error(404, "no_route", f"no endpoint {event.request_context.http.method} {event.path}")

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response:
        logger.exception("unexpected error")
        request_id = app.lambda_context.aws_request_id if app.lambda_context else "unknown"
        return error(500, "internal_error", f"something went wrong on our side (request id {request_id})")

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @metrics.log_metrics
    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return app.resolve(event, context)

    return handler

