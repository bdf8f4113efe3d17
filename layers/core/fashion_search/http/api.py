"""The HTTP API as a Lambda handler for API Gateway HTTP API (v2) events, on powertools' resolver.

Every failure becomes a JSON error naming the problem, in one shape ({"error": {"code", "message"},
"request_id"}): 4xx for what the caller can fix, 503 while no index can be served, 500 (with the request
id, traceback logged) for our own bugs. The OpenAPI document declares exactly these answers.
"""

import base64
import binascii
import json
import re
import warnings
from collections.abc import Callable
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ValidationException,
)
from aws_lambda_powertools.event_handler.openapi.models import OpenAPI
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from .. import __version__
from ..errors import FashionSearchError
from ..model.images import DEFAULT_MAX_PIXELS
from ..serve.query import Query
from ..serve.service import SearchService
from .schemas import (
    MAX_IMAGE_BYTES,
    MAX_REQUEST_BYTES,
    ErrorDetail,
    ErrorResponse,
    Fields,
    Health,
    ProductDetail,
    SearchRequest,
    SearchResponse,
    product_detail,
    search_response,
)

logger = Logger(service="fashion-search")
metrics = Metrics(namespace="FashionSearch", service="fashion-search")
tracer = Tracer(service="fashion-search")
copy_config_to_registered_loggers(source_logger=logger, include={"fashion_search"})
# Health checks and errors publish no metric: that is expected, not worth a warning per request.
warnings.filterwarnings("ignore", message="No application metrics to publish")

API = "/api/v1"
LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,", re.IGNORECASE)
_IMAGE_LIMIT = f"at most {MAX_IMAGE_BYTES // 2**20} MB is accepted"
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")
_INTERNAL_ERROR: OpenAPIResponse = {
    "description": "Our bug: the message names the request id its logged traceback carries",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}


class _Resolver(APIGatewayHttpResolver):
    """powertools' HTTP API resolver, changed where this API needs it: path parameters that take any
    character, the methods routed at a path (for 405s), and an OpenAPI document of the answers it gives."""

    @staticmethod
    def _compile_regex(rule: str, base_regex: str = "^{}$") -> re.Pattern[str]:
        """Path parameters take any character, '/' included: product ids are the catalog's, whatever they hold,
        and API Gateway hands the Lambda a decoded path (powertools' own pattern stops at '/' and at symbols)."""
        return re.compile(base_regex.format(re.sub(r"<(\w+)>", r"(?P<\1>.+)", rule)))

    def methods_at(self, path: str) -> list[str]:
        """The methods routed at `path`: a 405 names them in its Allow header."""
        return sorted({r.method for r in self._static_routes + self._dynamic_routes if r.rule.match(path)})

    def get_openapi_schema(self, **kwargs: Any) -> OpenAPI:
        """powertools' document less the 422 it declares on every operation (validation errors are answered 400,
        as the routes declare), with a 500 in the one error shape (it declares its own response-validation body)."""
        schema = super().get_openapi_schema(**kwargs)
        for item in (schema.paths or {}).values():
            for operation in (item.get, item.put, item.post, item.delete, item.patch):
                if operation is not None and operation.responses is not None:
                    operation.responses.pop(HTTPStatus.UNPROCESSABLE_ENTITY, None)
                    operation.responses[HTTPStatus.INTERNAL_SERVER_ERROR] = _INTERNAL_ERROR
        if schema.components and schema.components.schemas:
            for name in _VALIDATION_SCHEMAS:
                schema.components.schemas.pop(name, None)
        return schema


class ApiError(FashionSearchError):
    """A refusal of the HTTP layer's own (an image field that is not base64, an unknown product...), with its
    answer given where it is raised."""

    status, code = 400, "invalid_request"

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, status=status, code=code)


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
        raise ApiError(413, "image_too_large", f"image is {len(data) / 2**20:.1f} MB; {_IMAGE_LIMIT}")
    return data


def _json_body(text: str) -> Any:
    """json.loads, with what it refuses by other errors than JSONDecodeError (nesting past the recursion limit,
    integers past Python's 4,300 digits) refused as invalid JSON: a 400, not a 500."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError:
        raise json.JSONDecodeError("a number has too many digits", text, 0) from None


def _with_lowercase_media_type(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its Content-Type's media type lower-cased: media types are case-insensitive (RFC 9110),
    powertools matches "application/json" exactly."""
    headers = event.get("headers") or {}
    value = headers.get("content-type")
    if not value:
        return event
    media_type, separator, parameters = value.partition(";")
    return {**event, "headers": {**headers, "content-type": media_type.strip().lower() + separator + parameters}}


def _responses(ok: type[BaseModel], description: str, errors: dict[int, str]) -> dict[int, OpenAPIResponse]:
    """A route's answers for the OpenAPI document: `ok` on success, the one error shape for each error status."""
    responses: dict[int, OpenAPIResponse] = {200: {"description": description,
                                                   "content": {"application/json": {"model": ok}}}}
    for status, text in errors.items():
        responses[status] = {"description": text, "content": {"application/json": {"model": ErrorResponse}}}
    return responses


def _image_too_long(exc: ValidationException) -> int | None:
    """The image's length when it is past the hard cap: that is an image over 4 MB, a 413 like the others."""
    for error in exc.errors():
        if error.get("type") == "string_too_long" and tuple(error.get("loc", ()))[-1:] == ("image",):
            return len(error.get("input") or "")
    return None


def _field_message(field: str, error: dict[str, Any]) -> str:
    """One validation error in a shopper-developer's words, naming the field and the limit."""
    kind, ctx, value = error.get("type", ""), error.get("ctx") or {}, error.get("input")
    if kind == "string_too_long":
        return f"{field} is {len(error['input'])} characters long; at most {ctx['max_length']} are accepted"
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


def _validation_message(exc: ValidationException) -> str:
    messages = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        if error.get("type") == "json_invalid":
            return f"the request body is not valid JSON ({(error.get('ctx') or {}).get('error', 'unreadable')})"
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
    # A response that fails its model is our bug: 500, through `unexpected` (powertools' default is a 422).
    app = _Resolver(enable_validation=True, cors=cors, json_body_deserializer=_json_body,
                    response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR)
    app.enable_swagger(path=f"{API}/docs", title="fashion-search API", version=__version__,
                       description="Cross-modal product search: text, photo, or both fused with a weight.")
    thumbnails = service.settings.thumbnail_base_url

    def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        request_id = app.lambda_context.aws_request_id if app.lambda_context else None
        body = ErrorResponse(error=ErrorDetail(code=code, message=message), request_id=request_id)
        return Response(status, "application/json", body.model_dump_json(),
                        headers={"Cache-Control": "no-store", **(headers or {})})

    def unsupported_media_type() -> ApiError | None:
        """The 415 for a body that is not JSON: powertools also reads forms and multipart, this API takes JSON."""
        content_type = app.current_event.headers.get("content-type", "")
        if app.current_event.body and content_type and not content_type.startswith("application/json"):
            return ApiError(415, "unsupported_media_type",
                            f"send the request body as JSON (Content-Type: application/json), not {content_type}")
        return None

    @app.post(f"{API}/search", summary="Search products by text, image, or both",
              responses=_responses(SearchResponse, "The best matches, best first", {
                  400: "Invalid request: a field out of its bounds, no text nor image, an image that is not one, an "
                       "unknown filter field, an empty range, or a page past offset + top_k = 200",
                  404: "No product with the product_id searched like",
                  409: "The live index was built before filters and facets existed: rebuild it",
                  413: f"Image over {MAX_IMAGE_BYTES // 2**20} MB decoded or {DEFAULT_MAX_PIXELS / 1e6:g} MP, "
                       f"or request over {MAX_REQUEST_BYTES // 2**20} MB",
                  415: "Body not JSON, or image not JPEG, PNG or WebP",
                  503: "No index can be served yet"}))
    @tracer.capture_method
    def search(request: Annotated[SearchRequest, Body()]) -> SearchResponse:
        if refusal := unsupported_media_type():  # a form or multipart body that happened to validate
            raise refusal
        image = decode_image_field(request.image) if request.image else None
        # The request's fields are the Query's (the image decoded): a new query term is a field of both.
        result = service.search(Query(**request.query_fields(), image=image))
        metrics.add_metric(name="SearchLatency", unit=MetricUnit.Milliseconds, value=result.query_ms)
        metrics.add_metric(name="EmbeddingCacheHits", unit=MetricUnit.Count, value=result.cached)
        metrics.add_metric(name="EmbeddingCacheMisses", unit=MetricUnit.Count, value=result.encoded)
        metrics.add_metric(name=f"{result.search_type.capitalize()}Searches", unit=MetricUnit.Count, value=1)
        return search_response(result, thumbnails)

    @app.get(f"{API}/health", summary="Service status, live index version and model",
             responses=_responses(Health, "Status: 'unavailable' (still a 200) while no index is served", {}))
    def health() -> Health:
        return Health(**service.health())

    @app.get(f"{API}/fields", summary="What the live index can be filtered and faceted by",
             responses=_responses(Fields, "Its fields: keyword ones with their count of values, number ones with "
                                          "their range", {503: "No index can be served yet"}))
    def fields() -> Fields:
        return Fields(fields=service.fields())  # type: ignore[arg-type]  # dicts, validated into FilterField

    @app.get(f"{API}/products/<product_id>", summary="One product's metadata (any id, URL-encoded)",
             responses=_responses(ProductDetail, "The product", {400: "Id longer than 200 characters",
                                                           404: "Unknown product", 503: "No index can be served yet"}))
    def product(product_id: Annotated[str, Path(max_length=200)]) -> ProductDetail:
        found = service.product(product_id)
        if found is None:
            raise ApiError(404, "not_found", f"no product with id {product_id!r}")
        return product_detail(found, thumbnails)

    @app.get(f"{API}/openapi.json", include_in_schema=False)
    def openapi():  # no return annotation: powertools cannot model a bare Response
        schema = app.get_openapi_json_schema(title="fashion-search API", version=__version__)
        return Response(200, "application/json", schema)

    @app.exception_handler([RequestValidationError, RequestUnsupportedContentType])
    def invalid_request(exc: RequestValidationError | RequestUnsupportedContentType) -> Response:
        if refusal := unsupported_media_type():
            return known_error(refusal)
        if (length := _image_too_long(exc)) is not None:
            return error(413, "image_too_large", f"image is {length:,} characters of base64, over "
                                                 f"{MAX_IMAGE_BYTES // 2**20} MB decoded; {_IMAGE_LIMIT}")
        return error(400, "invalid_request", _validation_message(exc))

    @app.exception_handler(ValueError)
    def unreadable_body(exc: ValueError) -> Response:
        # powertools parses form and multipart bodies before validating, and lets a malformed one (multipart
        # without a boundary) out as a ValueError: this API takes JSON only, so such a body is a 415 as well.
        return known_error(refusal) if (refusal := unsupported_media_type()) else unexpected(exc)

    @app.exception_handler(FashionSearchError)
    def known_error(exc: FashionSearchError) -> Response:
        """Every error of ours, answered as its class (or the instance) declares. A 5xx other than the 503 (no
        index yet) is our side, answered as a bug (an index that cannot be searched: its message is for the log)."""
        if exc.status >= HTTPStatus.INTERNAL_SERVER_ERROR and exc.status != HTTPStatus.SERVICE_UNAVAILABLE:
            return unexpected(exc)
        return error(exc.status, exc.code, exc.public_message)

    @app.not_found
    def no_route(exc: NotFoundError) -> Response:
        event = app.current_event
        method = event.request_context.http.method
        if allowed := app.methods_at(event.path):
            return error(405, "method_not_allowed", f"{event.path} takes {' or '.join(allowed)}, not {method}",
                         headers={"Allow": ", ".join(allowed)})
        return error(404, "no_route", f"no endpoint {method} {event.path}")

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response:
        logger.exception("unexpected error")
        request_id = app.lambda_context.aws_request_id if app.lambda_context else "unknown"
        return error(500, "internal_error", f"something went wrong on our side (request id {request_id})")

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @metrics.log_metrics
    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        response = app.resolve(_with_lowercase_media_type(event), context)
        if cors:  # whether CORS headers are sent depends on the Origin: a cache must keep one answer per Origin
            response.setdefault("headers", {})["Vary"] = "Origin"
        return response

    return handler

