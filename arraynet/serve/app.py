"""The Starlette app: GET / (the drawing page), POST /predict, GET /healthz, GET /info,
GET /model.onnx, GET /favicon.ico.

POST /predict takes a PNG or JPEG body (at most MAX_BYTES bytes, MAX_PIXELS pixels),
preprocesses it as `arraynet predict` does and answers
{"digit": d, "probabilities": [p0, ..., p9], "input_png": "data:image/png;base64,..."}
(input_png: the 28x28 picture the model saw, grey value x 255). Bad input is a 4xx with
{"error": "..."}. GET /info is what the page's header shows: {"model": name,
"weights": file name, "test_error": fraction or null, "sha256": hex or null}.
When onnxruntime-web is bundled (static/ort/, scripts/vendor_ort_web.py) and the onnx
package is installed, GET /model.onnx is the model's ONNX export and the page can answer
in the browser instead.

Nothing heavy runs on the event loop: pictures are decoded by a small thread pool (those
over LARGE_PIXELS by a thread of their own), and one thread runs the model on batches of
the pictures that are waiting (`Batcher`). At most `max_in_flight` predictions (and
`max_large` large pictures) are under way at once; more get a 503 with Retry-After. Every
answer carries security headers, and only requests whose Host header names this server
(loopback names, and those allowed) are answered (`Guard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import ipaddress
import logging
import mimetypes
import os
import queue
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from arraynet.io.images import FORMATS, MAX_PIXELS  # (the limits `arraynet predict` keeps)
from arraynet.log import get_logger

MAX_BYTES = 1024 * 1024  # 1 MiB: a drawn digit is a few kB
MAX_BATCH = 64  # pictures per forward pass
MAX_IN_FLIGHT = 256  # predictions under way (decoding or waiting for the model) at once
DECODE_WORKERS = min(4, os.cpu_count() or 1)
LARGE_PIXELS = 1024 * 1024  # larger pictures decode one at a time, in a lane of their own
MAX_LARGE_IN_FLIGHT = 4
RETRY_AFTER_S = 1
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
STATIC = Path(__file__).resolve().parent / "static"
ORT_WEB = STATIC / "ort"
ORT_FILES = ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm")
STATUS = {"empty": 400, "format": 415, "size": 413, "unreadable": 400, "blank": 422}
# The page loads its own scripts, styles and the model; onnxruntime-web compiles WebAssembly.
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ValueError(
            f"serve needs {module.split('.')[0]}: `uv sync --extra serve` "
            "(starlette, uvicorn, pillow)"
        ) from e


class Predictor:
    """One model in eval mode; calls are serialised (the fast kernels share one pool)."""

    def __init__(self, model: Any) -> None:
        last = model.layers[-1].config() if model.layers else {}
        if not model.fused_softmax:
            ends = last.get("fn", last.get("type", "nothing"))
            raise ValueError(
                f"serve needs a model whose output is class probabilities (ending in softmax); "
                f"this one ends in {ends}"
            )
        self.model = model
        self.lock = threading.Lock()

    def __call__(self, x: Any) -> list[float]:
        return self.batch([x])[0]

    def batch(self, xs: list[Any]) -> list[list[float]]:
        """The probabilities of each (1, 28, 28, 1) host array of `xs`, in one forward pass."""
        b = self.model.backend
        f32 = b.dtype("float32")
        with self.lock:
            parts = [b.from_host(x, f32) for x in xs]
            x = parts[0] if len(parts) == 1 else b.xp.concat(parts, axis=0)
            probs = b.to_host(self.model.forward(x, False))
        return [[float(p) for p in row] for row in probs]


class Batcher:
    """Runs `predict_batch` on one thread over the pictures waiting for it: those that
    arrive while a forward pass runs go together into the next one (at most `max_batch`).
    Each caller gets its own row back."""

    def __init__(self, predict_batch: Callable[[list[Any]], list[Any]], max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.predict_batch = predict_batch
        self.max_batch = max_batch
        self.queue: queue.SimpleQueue[tuple[Any, Future] | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()

    def submit(self, x: Any) -> Future:
        """A future of `x`'s answer."""
        with self.start_lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="arraynet-batcher")
                self.thread.daemon = True
                self.thread.start()
        fut: Future = Future()
        self.queue.put((x, fut))
        return fut

    def close(self) -> None:
        """Stop the thread once the pictures already waiting are answered."""
        with self.start_lock:
            thread, self.thread = self.thread, None
            if thread is not None:
                self.queue.put(None)
        if thread is not None:
            thread.join()

    def _take(self) -> tuple[list[tuple[Any, Future]], bool]:
        """The next batch (waiting for its first picture) and whether to stop after it."""
        first = self.queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._take()
            batch = [(x, f) for x, f in batch if f.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                rows = self.predict_batch([x for x, _ in batch])
                if len(rows) != len(batch):
                    raise RuntimeError(f"{len(rows)} answers to {len(batch)} pictures")
            except BaseException as e:  # the callers see it; the thread goes on
                for _, f in batch:
                    f.set_exception(e)
            else:
                for (_, f), row in zip(batch, rows, strict=True):
                    f.set_result(row)


class Busy(Exception):
    """No place left for this request: answer 503 with Retry-After."""


def picture_pixels(body: bytes) -> int:
    """Width x height from a PNG's header or a JPEG's frame header, without decoding: 0
    for something else (the decoder says what is wrong), MAX_PIXELS for a JPEG whose frame
    header does not come within its first 64 segments."""
    if body[:8] == b"\x89PNG\r\n\x1a\n" and body[12:16] == b"IHDR" and len(body) >= 24:
        return int.from_bytes(body[16:20], "big") * int.from_bytes(body[20:24], "big")
    if body[:2] == b"\xff\xd8":
        i = 2
        for _ in range(64):  # the frame header comes after a few tables
            if i + 9 > len(body) or body[i] != 0xFF:
                break
            marker = body[i + 1]
            if marker == 0xFF:  # a fill byte
                i += 1
            elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
                height = int.from_bytes(body[i + 5 : i + 7], "big")
                return height * int.from_bytes(body[i + 7 : i + 9], "big")
            else:
                i += 2 + int.from_bytes(body[i + 2 : i + 4], "big")
        return MAX_PIXELS  # not found early: assume the worst
    return 0


class Pipeline:
    """Decode (a small thread pool) then predict (a `Batcher`), with at most
    `max_in_flight` requests inside at once. Pictures of more than LARGE_PIXELS decode in a
    lane of their own, one at a time, at most `max_large` of them inside: a few huge
    pictures neither hold up the small ones nor take much memory."""

    def __init__(
        self,
        predictor: Predictor,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_batch: int = MAX_BATCH,
        decode_workers: int = DECODE_WORKERS,
        max_large: int = MAX_LARGE_IN_FLIGHT,
    ) -> None:
        if min(max_in_flight, decode_workers, max_large) < 1:
            raise ValueError("max_in_flight, decode_workers and max_large must be at least 1")
        self.max_in_flight, self.max_large = max_in_flight, max_large
        self.workers = {"small": decode_workers, "large": 1}
        self.batcher = Batcher(predictor.batch, max_batch)
        self.in_flight = self.large_in_flight = 0
        self.lock = threading.Lock()
        self.pools: dict[str, ThreadPoolExecutor] = {}

    def admit(self) -> bool:
        """Take a place, or False when all `max_in_flight` are taken."""
        with self.lock:
            if self.in_flight >= self.max_in_flight:
                return False
            self.in_flight += 1
            return True

    def release(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def _pool(self, lane: str) -> ThreadPoolExecutor:
        with self.lock:
            if lane not in self.pools:
                self.pools[lane] = ThreadPoolExecutor(self.workers[lane], f"arraynet-{lane}")
            return self.pools[lane]

    def _enter_large(self, delta: int) -> bool:
        with self.lock:
            if delta > 0 and self.large_in_flight >= self.max_large:
                return False
            self.large_in_flight += delta
            return True

    async def decode(self, body: bytes) -> tuple[Any, str]:
        """The model's input for an encoded picture and its preview (`decode_picture`);
        raises ImageError, or Busy when the lane of large pictures is full."""
        large = LARGE_PIXELS < picture_pixels(body) <= MAX_PIXELS
        if large and not self._enter_large(1):
            raise Busy(f"the server is busy ({self.max_large} large pictures under way)")
        try:
            pool = self._pool("large" if large else "small")
            fut = pool.submit(decode_picture, body)
            return await asyncio.wrap_future(fut)
        finally:
            if large:
                self._enter_large(-1)

    async def predict(self, x: Any) -> list[float]:
        return await asyncio.wrap_future(self.batcher.submit(x))

    def close(self) -> None:
        """Stop the threads (they start again on the next request)."""
        self.batcher.close()
        with self.lock:
            pools, self.pools = list(self.pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=True)


def host_name(value: str) -> str | None:
    """The host of a Host header or of an --allowed-host value, lower-case and without
    its port (an IPv6 address in brackets); None when it is not one."""
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        name, rest = v[: end + 1], v[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return None
        return name
    if v.count(":") > 1:  # a bare IPv6 address (only an option's value may be one)
        try:
            return f"[{ipaddress.IPv6Address(v)}]"
        except ValueError:
            return None
    name, _, port = v.partition(":")
    name = name.rstrip(".")
    if not name or (port and not port.isdigit()) or (_ and not port):
        return None
    if not all(c.isascii() and (c.isalnum() or c in "-._") for c in name):
        return None
    return name


def allowed_host_names(extra: Iterable[str] | None) -> frozenset[str] | None:
    """The loopback names and `extra` (names or addresses, ports ignored); None (anyone)
    when `extra` holds "*". Raises ValueError naming a value that is not a host."""
    names = set(LOOPBACK_HOSTS)
    for value in extra or ():
        if value.strip() == "*":
            return None
        name = host_name(value)
        if name is None:
            raise ValueError(f"not a host name or address: {value!r}")
        names.add(name)
    return frozenset(names)


class Guard:
    """ASGI middleware: answers 400 to a request whose Host header is not allowed (a page
    using DNS rebinding sends its own name), and adds SECURITY_HEADERS to every answer."""

    def __init__(self, app: Any, allowed: frozenset[str] | None) -> None:
        from starlette.datastructures import Headers
        from starlette.responses import JSONResponse

        self.app = app
        self.allowed = allowed
        self.raw = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
        self.headers, self.json = Headers, JSONResponse

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *self.raw]
            await send(message)

        host = self.headers(scope=scope).get("host", "")
        if self.allowed is not None and host_name(host) not in self.allowed:
            shown = ", ".join(sorted(self.allowed))
            message = (
                f"the Host {host!r} is not served here (allowed: {shown}; "
                "arraynet serve --allowed-host NAME adds one)"
            )
            await self.json({"error": message}, 400)(scope, receive, send_secured)
            return
        await self.app(scope, receive, send_secured)


def browser_model(model: Any) -> bytes | None:
    """The ONNX export the page runs in the browser, or None when that mode is off
    (onnxruntime-web not bundled, or the onnx package missing)."""
    if not all((ORT_WEB / f).is_file() for f in ORT_FILES):
        return None
    try:
        import onnx  # noqa: F401
    except ImportError:
        return None
    from arraynet.io.onnx_export import export_bytes

    return export_bytes(model)


def model_info(name: str, sha256: str | None, meta: dict | None) -> dict[str, Any]:
    """What GET /info answers and the page's header shows: the model's name (from the
    weights' record, else the file's `name`), the weights file, the test error the record
    holds (a fraction, None when it holds none) and the file's SHA-256 (None: not given)."""
    meta = meta if isinstance(meta, dict) else {}
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    error = metrics.get("error_rate")
    number = isinstance(error, (int, float)) and not isinstance(error, bool)
    model = meta.get("model")
    return {
        "model": model if isinstance(model, str) and model else name,
        "weights": name,
        "test_error": float(error) if number else None,
        "sha256": sha256,
    }


def index_page(info: dict[str, Any]) -> str:
    """The drawing page: the model and its test error in the header, the weights (and
    their SHA-256) at its foot."""
    label = f"Weights: {info['weights']}" + (
        f", SHA-256 {info['sha256']}" if info["sha256"] else ""
    )
    error = info["test_error"]
    shown = "not recorded" if error is None else f"{100 * error:.2f} %"
    model = (
        f'Model <strong id="model-name">{html.escape(info["model"])}</strong>, '
        f'test error <strong id="test-error">{html.escape(shown)}</strong>'
    )
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    return page.replace("<!--model-->", model, 1).replace("<!--weights-->", html.escape(label), 1)


def decode_picture(body: bytes) -> tuple[Any, str]:
    """An encoded picture's model input and its preview (`preview_png`); ImageError when
    it is not a PNG or JPEG digit within MAX_PIXELS."""
    from arraynet.io.images import digit_from_bytes, preview_png

    x = digit_from_bytes(body, "body", FORMATS, MAX_PIXELS)
    return x, preview_png(x)


class Service:
    """The app's request handlers, over one `Pipeline` and the page, the health answer,
    the model facts and the ONNX export made once at start."""

    def __init__(self, pipeline: Pipeline, onnx_bytes: bytes | None, info: dict) -> None:
        from arraynet.io.images import ImageError

        self.pipeline, self.onnx_bytes, self.info = pipeline, onnx_bytes, info
        self.health = {"status": "ok", "model": info["weights"], "browser": onnx_bytes is not None}
        if info["sha256"] is not None:
            self.health["sha256"] = info["sha256"]
        self.page = index_page(info)
        self.favicon = (STATIC / "favicon.svg").read_bytes()
        self.image_error = ImageError

    async def index(self, request: Any) -> Any:
        from starlette.responses import HTMLResponse

        return HTMLResponse(self.page)

    async def healthz(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(self.health)

    async def model_info(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(self.info)

    async def favicon_ico(self, request: Any) -> Any:
        from starlette.responses import Response

        return Response(self.favicon, media_type="image/svg+xml")

    async def model_onnx(self, request: Any) -> Any:
        from starlette.responses import Response

        if self.onnx_bytes is None:
            return _error(404, "the in-browser mode is off (onnxruntime-web or onnx missing)")
        return Response(self.onnx_bytes, media_type="application/octet-stream")

    async def predict(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        pipeline = self.pipeline
        if not pipeline.admit():
            return _busy(f"the server is busy ({pipeline.max_in_flight} predictions under way)")
        try:
            body = await _read_body(request)
            if body is None:
                return _error(413, f"the body must be an image of at most {MAX_BYTES:,} bytes")
            try:
                x, preview = await pipeline.decode(body)
            except self.image_error as e:
                return _error(STATUS.get(e.reason, 400), str(e))
            except Busy as e:
                return _busy(str(e))
            try:
                probs = await pipeline.predict(x)
            except Exception as e:  # a bug: logged, and a JSON answer with the headers
                logging.getLogger(__name__).exception("the model failed")
                return _error(500, f"the model failed: {type(e).__name__}: {e}")
        finally:
            pipeline.release()
        digit = max(range(len(probs)), key=probs.__getitem__)
        return JSONResponse({"digit": digit, "probabilities": probs, "input_png": preview})

    async def http_error(self, request: Any, exc: Exception) -> Any:
        from starlette.exceptions import HTTPException

        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, str(exc.detail))


def create_app(
    model: Any,
    name: str = "model",
    browser: bool = True,
    sha256: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
    max_in_flight: int = MAX_IN_FLIGHT,
    max_batch: int = MAX_BATCH,
    decode_workers: int = DECODE_WORKERS,
    max_large: int = MAX_LARGE_IN_FLIGHT,
    meta: dict | None = None,
) -> Any:
    """The app serving a built model (its last layer a softmax); `browser` offers the
    in-browser mode when it can run; `sha256` (of the weights file) is shown at /healthz,
    /info and on the page; `meta` (the record saved with the weights, `load_model`'s
    second answer) gives the model's name and test error at /info and in the page's
    header. Host headers naming loopback or `allowed_hosts` ("*": any) are
    answered; beyond `max_in_flight` predictions at once (or `max_large` pictures of over
    LARGE_PIXELS), a 503; the model runs on batches of at most `max_batch` pictures,
    decoded by `decode_workers` threads (the large ones by one more)."""
    _need("PIL")
    mimetypes.add_type("text/javascript", ".mjs")  # module scripts need a JavaScript type
    mimetypes.add_type("application/wasm", ".wasm")
    applications = _need("starlette.applications")
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    allowed = allowed_host_names(allowed_hosts)
    pipeline = Pipeline(Predictor(model), max_in_flight, max_batch, decode_workers, max_large)
    onnx_bytes = browser_model(model) if browser else None
    service = Service(pipeline, onnx_bytes, model_info(name, sha256, meta))

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(pipeline.close)

    routes = [
        Route("/", service.index),
        Route("/healthz", service.healthz),
        Route("/info", service.model_info),
        Route("/favicon.ico", service.favicon_ico),
        Route("/predict", service.predict, methods=["POST"]),
        Route("/model.onnx", service.model_onnx),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = applications.Starlette(
        routes=routes,
        middleware=[Middleware(Guard, allowed=allowed)],
        exception_handlers={HTTPException: service.http_error},
        lifespan=lifespan,
    )
    app.state.pipeline = pipeline
    return app


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    """A JSON error answer: {"error": message}."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _busy(message: str) -> Any:
    """503, with when to retry."""
    return _error(503, f"{message}; retry", {"Retry-After": str(RETRY_AFTER_S)})


async def _read_body(request: Any) -> bytes | None:
    """The request's body, or None when it is over MAX_BYTES (read no further)."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BYTES):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BYTES:
            return None
    return bytes(body)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one); errors are one line.

    Its connections send without delay (TCP_NODELAY): an answer goes out as two writes,
    headers then body, and Nagle's algorithm would hold the body until the client's
    delayed acknowledgement of the headers, some 40 ms later."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited on Linux
    except OSError as e:
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    # create_server leaves the protocol 0; named TCP, asyncio sets TCP_NODELAY on each
    # accepted connection itself (where the option is not inherited)
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


def exposure_warning(address: str, port: int) -> str | None:
    """The one-line warning for a server bound to `address`, or None on loopback."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback:
        return None
    where = f"[{address}]" if ":" in address else address
    wild = ip is not None and ip.is_unspecified
    reach = "every network interface" if wild else "not a loopback address"
    return (
        f"warning: listening on {where}:{port}, {reach}: anyone who can reach this machine "
        "can use the model (a proxy with TLS belongs in front; --allowed-host names the "
        "hosts clients use)"
    )


def run_server(
    model: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str = "model",
    sha256: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
    meta: dict | None = None,
) -> None:
    """Serve the page and the API with uvicorn until interrupted (`meta`: the weights'
    record, see `create_app`). Bound to a non-loopback address, it says so on stderr and
    answers that address (and `host`) as a Host too."""
    uvicorn = _need("uvicorn")
    hosts = list(allowed_hosts or ())
    allowed_host_names(hosts)  # a bad name is an error before the socket opens
    sock = listen(host, port)
    bound = sock.getsockname()
    where = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
    warning = exposure_warning(bound[0], bound[1])
    if warning is not None:
        hosts += [bound[0]] + ([host] if host_name(host) is not None else [])
    try:
        app = create_app(model, name, sha256=sha256, allowed_hosts=hosts, meta=meta)
    except BaseException:
        sock.close()
        raise
    if warning is not None:  # a WARNING: on stderr by default (arraynet.log)
        get_logger(__name__).warning("%s", warning)
    print(f"serving {name} on http://{where}:{bound[1]}/ (Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
