"""``rag serve``: a JSON HTTP API (FastAPI) with the Gradio app mounted beside it, on uvicorn, in one or more
worker processes.

- ``POST /api/v1/ask``, ``/api/v1/check``, ``/api/v1/search`` and ``GET /api/v1/documents`` return the same
  JSON as the Gradio endpoints and ``rag ask/check/search --json``, with the same validation (the pipeline's
  text checks, ``k`` within RAG_TOP_K's range, only the backends the server allows);
- OpenAPI docs at ``/api/docs`` (schema at ``/api/openapi.json``);
- with ``RAG_AUTH=user:password``, the API wants HTTP Basic auth with those credentials (the Gradio app keeps
  its login page), and wrong credentials lock a client out as failed logins of the app do (ui/login.py);
- at most ``RAG_MAX_CONCURRENCY`` questions/claims are answered at once per process, at most ``RAG_MAX_QUEUE``
  wait, and beyond that the API answers 503 at once; request bodies over 1 MB are refused (413), counted as
  they arrive (a chunked upload without Content-Length too), so no more than that is ever read.

Errors are ``{"error": "<one line>"}``: 400 for a bad request (the CLI's exit code 2 or 3), 422 for a body that
is not the JSON object the route wants, 413 for one over 1 MB, 503 when busy, 502 when an LLM backend failed,
500 otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import threading
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field, WithJsonSchema
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.errors import RagError, UsageError
from rag.pipeline import Pipeline
from rag.settings import Settings
from rag.types import search_json
from ui.login import LoginThrottle, shared_failures

log = logging.getLogger("rag.ui")
MAX_BODY_BYTES = 1_000_000
API_PREFIX = "/api/v1"


class Busy(Exception):
    """More requests are waiting than RAG_MAX_QUEUE allows."""


class Gate:
    """RAG_MAX_CONCURRENCY requests at once, RAG_MAX_QUEUE more waiting, the rest refused at once."""

    def __init__(self, limit: int, queue: int):
        self._slots = threading.Semaphore(limit)
        self._lock = threading.Lock()
        self._admitted, self._most = 0, limit + queue

    @contextmanager
    def __call__(self):
        with self._lock:
            if self._admitted >= self._most:
                raise Busy
            self._admitted += 1
        try:
            with self._slots:
                yield
        finally:
            with self._lock:
                self._admitted -= 1


# ``k`` is taken as the JSON carried it and checked by ``_whole`` and ``api_top_k``, so that a refused k is a 400
# with their one-line message; pydantic's lax number would turn ``true`` into 1 and ``"3"`` into 3. The schema
# still says what is wanted.
TopK = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 50})]


class AskRequest(BaseModel):
    question: str = Field(description="The question (at most RAG_MAX_QUESTION_CHARS characters).")
    backend: str = Field("", description="Answer backend; empty: the server's. Only backends the server allows.")
    k: TopK = Field(0, description="Passages to retrieve, 1 to 50; 0: the server's RAG_TOP_K.")
    history: list | None = Field(None, description="Earlier turns ([{question, answer}, ...]) for a follow-up.")


class CheckRequest(BaseModel):
    claim: str = Field(description="A claim or quotation to check against the corpus.")
    k: TopK = Field(0, description="Passages to retrieve, 1 to 50; 0: the server's RAG_TOP_K.")


class SearchRequest(BaseModel):
    query: str = Field(description="The search query.")
    k: TopK = Field(0, description="Passages to return, 1 to 50; 0: the server's RAG_TOP_K.")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _BodyTooLarge(HTTPException):
    """Raised from ``receive`` once an API request's body passes MAX_BODY_BYTES. An HTTPException, so that
    FastAPI's body reading passes it on (any other exception there becomes a 400) to the handler that
    ``create_api`` registers for it."""

    MESSAGE = f"request body over {MAX_BODY_BYTES:,} bytes"

    def __init__(self) -> None:
        super().__init__(status_code=413, detail=self.MESSAGE)


class BodyLimit:
    """ASGI middleware: an API request whose body is over ``limit`` bytes gets 413. A Content-Length over the
    limit is refused from the headers; otherwise the bytes are counted as the app reads them, so a chunked
    upload (no Content-Length) is stopped as soon as it passes the limit, with at most one more chunk read (the
    server discards the rest as it arrives, without keeping it). Other paths (the Gradio app, which has its own
    upload limit) pass untouched."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES, prefix: str = API_PREFIX):
        self.app, self.limit, self.prefix = app, limit, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _error(413, _BodyTooLarge.MESSAGE)(scope, receive, send)
            return
        received, started = 0, False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _BodyTooLarge:  # read outside a route's exception handling: answer here, as the handler would
            if started:
                raise
            await _error(413, _BodyTooLarge.MESSAGE)(scope, receive, send)


def create_api(pipeline: Pipeline) -> FastAPI:
    """The JSON API over a loaded pipeline (the Gradio app is mounted on it by ``create_app``)."""
    from ui.app import _message, allowed_backend, api_top_k

    settings = pipeline.settings
    gate = Gate(settings.max_concurrency, settings.max_queue)
    basic = HTTPBasic(auto_error=False)

    # Wrong credentials count as failed logins of the app (ui/login.py): the same lockout per client address, in
    # the counts that every process serving these settings on this machine shares. Without RAG_AUTH there are no
    # logins to count, and no counts file is created.
    throttle = LoginThrottle(None, max_failures=settings.login_max_failures, lockout_s=settings.login_lockout,
                             store=shared_failures(settings)) if settings.auth else None

    def authorised(request: Request, credentials: HTTPBasicCredentials | None = Depends(basic)) -> None:  # noqa: B008
        if throttle is None:  # no RAG_AUTH
            return
        client = request.client.host if request.client else "unknown"
        wait = throttle.retry_after(client)
        if wait > 0:
            raise _Unauthorised(f"too many failed logins; try again in {math.ceil(wait)} s", 429, math.ceil(wait))
        user, password = settings.auth.split(":", 1)
        if credentials is None:
            raise _Unauthorised("authentication required (HTTP Basic, RAG_AUTH)")
        if not (secrets.compare_digest(credentials.username.encode(), user.encode())
                and secrets.compare_digest(credentials.password.encode(), password.encode())):
            throttle._record(client, failed=True)
            raise _Unauthorised("wrong user name or password")
        throttle._record(client, failed=False)

    api = FastAPI(title="rag-news API", version="1", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json",
                  description="Questions about news articles, answered with citations you can check.")

    @api.exception_handler(_Unauthorised)
    def _unauthorised(request: Request, exc: _Unauthorised) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="rag"'}
        if exc.retry_after:
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    api.add_middleware(BodyLimit)

    @api.exception_handler(_BodyTooLarge)
    async def _too_large(request: Request, exc: _BodyTooLarge) -> JSONResponse:
        return _error(413, exc.MESSAGE)

    @api.exception_handler(RequestValidationError)
    async def _unreadable(request: Request, exc: RequestValidationError) -> JSONResponse:
        if not request.url.path.startswith(API_PREFIX):
            return await request_validation_exception_handler(request, exc)
        return _error(422, _validation_message(exc.errors(), request.headers.get("content-type", "")))

    def answer(work) -> Any:
        try:
            with gate():
                return work()
        except Busy:
            return _error(503, "the server is busy; try again shortly")
        except RagError as exc:
            status = 400 if exc.exit_code in (2, 3) else 502 if exc.exit_code == 7 else 500
            return _error(status, str(exc))
        except Exception as exc:  # one line to the caller, the traceback in the log
            return _error(500, _message(exc))

    @api.post(f"{API_PREFIX}/ask", dependencies=[Depends(authorised)], summary="Answer a question with citations")
    def ask(request: AskRequest):
        """The answer with numbered citations (source, start, end, text, verdict), confidence and checks: the
        JSON of `rag ask --json`."""
        return answer(lambda: pipeline.ask(request.question, backend=allowed_backend(pipeline, request.backend),
                                           k=api_top_k(_whole(request.k)), history=request.history or None).to_json())

    @api.post(f"{API_PREFIX}/check", dependencies=[Depends(authorised)], summary="Check a claim or quote")
    def check(request: CheckRequest):
        """Verdict (supported / partial / unsupported), its reason and the best passages: `rag check --json`."""
        return answer(lambda: pipeline.check(request.claim, k=api_top_k(_whole(request.k))).to_json())

    @api.post(f"{API_PREFIX}/search", dependencies=[Depends(authorised)], summary="Ranked passages for a query")
    def search(request: SearchRequest):
        """`{query, hits}` (hybrid dense + keyword, fused by reciprocal rank): `rag search --json`."""
        return answer(lambda: search_json(pipeline.clean_query(request.query),
                                          pipeline.search(request.query, k=api_top_k(_whole(request.k)))))

    @api.get(f"{API_PREFIX}/documents", dependencies=[Depends(authorised)], summary="The indexed documents")
    def documents():
        return pipeline.documents()

    # Anything else under the API's prefix, answered in the API's own shape: without this route the app mounted
    # at "/" answered (a GET of /api/v1/ask was Gradio's 404 {"detail": "Not Found"}, not a 405).
    @api.api_route(API_PREFIX + "/{rest:path}", include_in_schema=False,
                   methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    def elsewhere(request: Request, rest: str) -> JSONResponse:
        allowed = sorted({method for route in api.routes if getattr(route, "path", None) == request.url.path
                          and route.name != "elsewhere" for method in getattr(route, "methods", ()) or ()})
        if allowed:
            response = _error(405, f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}")
            response.headers["Allow"] = ", ".join(allowed)
            return response
        return _error(404, f"no such endpoint: {request.url.path[:100]} (the endpoints: /api/docs)")

    return api


class _Unauthorised(Exception):
    def __init__(self, message: str, status: int = 401, retry_after: int = 0):
        super().__init__(message)
        self.message, self.status, self.retry_after = message, status, retry_after


def _whole(k: Any) -> float | int:
    """``k`` as the JSON carried it: an integer, or a float of integral value (3.0), as a whole number. Other
    floats (2.5, and NaN and ±Infinity, which JSON allows here) stay floats for api_top_k to refuse in its own
    words; anything else (true, "3", null, a list) is refused here in the same words."""
    if isinstance(k, int) and not isinstance(k, bool):
        return k
    if isinstance(k, float):
        return int(k) if math.isfinite(k) and k == int(k) else k
    from ui.app import MAX_TOP_K

    raise UsageError(f"k must be a whole number from 1 to {MAX_TOP_K} (0: the server's setting), "
                     f"got {json.dumps(k)[:40]}")


def _validation_message(errors: list[dict], content_type: str) -> str:
    """FastAPI's validation errors as the API's one line: what is wrong with the body, field by field."""
    parts = []
    for error in errors:
        where = [str(part) for part in error.get("loc", ()) if part != "body"]
        kind = error.get("type", "")
        if kind == "json_invalid":
            parts.append(f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'decode error')} "
                         f"at character {where[0] if where else '?'})")
        elif not where:  # the body as a whole: absent, or not a JSON object
            media = content_type.split(";")[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                parts.append("the body must be a JSON object sent with Content-Type: application/json, got "
                             + (f"Content-Type: {media[:60]}" if media else "no Content-Type"))
            else:
                parts.append("the body must be a JSON object (its fields: /api/docs)")
        elif kind == "missing":
            parts.append(f"{'.'.join(where)} is required")
        else:
            parts.append(f"{'.'.join(where)}: {error.get('msg', 'invalid')}")
    return " ".join("; ".join(dict.fromkeys(parts)).split())[:500] or "the request body could not be read"


def create_app(settings: Settings, ui: bool = True, pipeline: Pipeline | None = None) -> FastAPI:
    """The API with the Gradio app mounted at ``/`` (its own endpoints, queue and login stay as they are), over
    ``pipeline`` or the process's one pipeline."""
    import gradio as gr

    from ui.app import CSS, build_app, shared_pipeline, theme
    from ui.login import middleware_for

    pipeline = pipeline or shared_pipeline(settings)
    settings = pipeline.settings
    api = create_api(pipeline)
    if ui:
        auth = tuple(settings.auth.split(":", 1)) if settings.auth else None
        api = gr.mount_gradio_app(api, build_app(pipeline), path="", auth=auth,
                                  auth_message="Sign in to the news QA app." if auth else None,
                                  max_file_size=int(settings.max_file_mb * 1_000_000), footer_links=["api"],
                                  ssr_mode=False, theme=theme(), css=CSS,
                                  app_kwargs={"middleware": middleware_for(settings)})  # login rate limit
    return api


def app_from_environment() -> FastAPI:
    """uvicorn's factory in each API worker process: the settings come from RAG_* (``serve`` puts the command
    line's flags there); no web app in these processes (RAG_SERVE_UI=0), it runs in one of its own."""
    return create_app(Settings(), ui=os.environ.get("RAG_SERVE_UI", "1") == "1")


def serve(settings: Settings, workers: int = 1) -> None:
    """Serve the API and the app with uvicorn.

    One worker: one process, the app at ``/`` and the API beside it. More: the JSON API runs in ``workers``
    processes on one port (the kernel spreads the connections; each loads the model and index once), and the web
    app in one process of its own on ``ui_port``, because Gradio keeps a queued job in the process that took it: a
    browser's next request, landing on another worker, would not find it. Both read the same index and count
    failed logins in the same file (ui/login.py); the app's process ends with the server."""
    import subprocess
    import sys

    import uvicorn

    from rag.net import free_port, free_port_from, stop_process

    port = settings.port or free_port(settings.host)
    if workers <= 1:
        uvicorn.run(create_app(settings), host=settings.host, port=port, log_level="warning")
        return
    ui_port = settings.ui_port or free_port_from(settings.host, port + 1)
    if ui_port == port:
        raise UsageError(f"the web app's port (--ui-port {ui_port}) is the JSON API's port: choose another")
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude_unset=True).items():
        if value is not None:
            env[f"RAG_{name.upper()}"] = str(value)
    ui = subprocess.Popen([sys.executable, "-m", "ui.server", str(os.getpid())],
                          env={**env, "RAG_HOST": settings.host, "RAG_PORT": str(ui_port), "RAG_SERVE_UI": "1"})
    log.warning("%d workers: the JSON API at http://%s:%d%s/; the web app at http://%s:%d/ (a process of its own)",
                workers, settings.host, port, API_PREFIX, settings.host, ui_port)
    stopping = threading.Event()

    def report_an_early_end() -> None:  # e.g. --ui-port already taken: say so once; the API keeps serving
        code = ui.wait()
        if not stopping.is_set():
            log.error("the web app's process ended (exit code %s); the JSON API keeps running on port %d", code, port)

    threading.Thread(target=report_an_early_end, name="web app watch", daemon=True).start()
    os.environ.update({**env, "RAG_SERVE_UI": "0"})
    try:
        uvicorn.run("ui.server:app_from_environment", factory=True, host=settings.host, port=port, workers=workers,
                    log_level="warning")
    finally:
        stopping.set()
        stop_process(ui, timeout=10)


def serve_web_app_from_environment(parent: int) -> None:
    """``python -m ui.server PARENT``: the web app (with the API beside it) in one process, for ``serve`` with
    several API workers; settings from RAG_*, and it ends when the server that started it does."""
    import uvicorn

    from rag.net import exit_with_parent

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    exit_with_parent(parent)
    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    import sys

    serve_web_app_from_environment(int(sys.argv[1]))
