"""The Starlette app: GET / (the drawing page), POST /predict, GET /healthz, GET /model.onnx.

POST /predict takes a PNG or JPEG body (at most MAX_BYTES bytes, MAX_PIXELS pixels),
preprocesses it as `arraynet predict` does and answers
{"digit": d, "probabilities": [p0, ..., p9]}. Bad input is a 4xx with {"error": "..."}.
When onnxruntime-web is bundled (static/ort/, scripts/vendor_ort_web.py) and the onnx
package is installed, GET /model.onnx is the model's ONNX export and the page can answer
in the browser instead.
"""

from __future__ import annotations

import mimetypes
import socket
import threading
from pathlib import Path
from typing import Any

MAX_BYTES = 1024 * 1024  # 1 MiB: a drawn digit is a few kB
MAX_PIXELS = 4096 * 4096
STATIC = Path(__file__).resolve().parent / "static"
ORT_WEB = STATIC / "ort"
ORT_FILES = ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm")
STATUS = {"empty": 400, "format": 415, "size": 413, "unreadable": 400, "blank": 422}


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
        b = self.model.backend
        with self.lock:
            probs = b.to_host(self.model.forward(b.from_host(x, b.dtype("float32")), False))
        return [float(p) for p in probs[0]]


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


def create_app(model: Any, name: str = "model", browser: bool = True) -> Any:
    """The app serving a built model (its last layer a softmax); `browser` offers the
    in-browser mode when it can run."""
    _need("PIL")
    mimetypes.add_type("text/javascript", ".mjs")  # module scripts need a JavaScript type
    mimetypes.add_type("application/wasm", ".wasm")
    applications = _need("starlette.applications")
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from arraynet.io.images import ImageError, digit_from_bytes

    predictor = Predictor(model)
    onnx_bytes = browser_model(model) if browser else None

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "model": name, "browser": onnx_bytes is not None})

    async def model_onnx(request: Request) -> Response:
        if onnx_bytes is None:
            return error(404, "the in-browser mode is off (onnxruntime-web or onnx missing)")
        return Response(onnx_bytes, media_type="application/octet-stream")

    async def predict(request: Request) -> JSONResponse:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BYTES):
            return error(413, f"the body must be an image of at most {MAX_BYTES:,} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BYTES:
                return error(413, f"the body must be an image of at most {MAX_BYTES:,} bytes")
        try:
            x = digit_from_bytes(bytes(body), "body", ("PNG", "JPEG"), MAX_PIXELS)
        except ImageError as e:
            return error(STATUS.get(e.reason, 400), str(e))
        probs = await run_in_threadpool(predictor, x)
        digit = max(range(len(probs)), key=probs.__getitem__)
        return JSONResponse({"digit": digit, "probabilities": probs})

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, str(exc.detail))

    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/predict", predict, methods=["POST"]),
        Route("/model.onnx", model_onnx),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return applications.Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one); errors are one line."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as e:
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def run_server(model: Any, host: str = "127.0.0.1", port: int = 8000, name: str = "model") -> None:
    """Serve the page and the API with uvicorn until interrupted."""
    app = create_app(model, name)
    uvicorn = _need("uvicorn")
    sock = listen(host, port)
    bound = sock.getsockname()
    where = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
    print(f"serving {name} on http://{where}:{bound[1]}/ (Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
