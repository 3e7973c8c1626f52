"""A load test of `arraynet serve`: many concurrent clients posting MNIST digits as PNGs
to POST /predict while another process polls GET /healthz.

    uv run python scripts/load_test_serve.py [--clients 200] [--seconds 20]
        [--weights models/best.safetensors] [--scale 1] [--big-clients 0] [--max-load 1.0]
        [--repo DIR] [--json benchmarks/serve-load.json]

It starts `arraynet serve WEIGHTS --port 0` on 127.0.0.1 from the checkout `--repo` (this
one by default; another gives a baseline), or uses `--url` of a running server. It asks
once for each of 256 test digits one at a time (the reference answers), then runs
`--clients` clients for `--seconds` seconds, each on its own keep-alive connection, posting
the digits in turn (28x28 PNGs, or `--scale` times that: 10 gives the page's 280x280); a
503 is retried after its Retry-After (at most 1 s). A process of its own asks for /healthz
every 50 ms meanwhile, so that the clients' event loop does not delay it. `--big-clients`
more clients post a 4096x4096 PNG (the largest picture the server accepts) in a loop. The
clients speak HTTP/1.1 over asyncio streams (stdlib only): their own cost stays small.

Printed (and written with --json): /predict answers per second (200s only), their p50 and
p99 latency, /healthz p50 and p99, the counts of 503s, of errors (other statuses, broken
connections) and of wrong answers (a digit other than the one-at-a-time answer), and the
server's CPU time per answer and peak resident memory. With `--max-load`, it first waits
(up to `--wait-load` seconds, checking every minute) until the 1-minute load average is at
most that, and records the load average it started under. Exit status 1 when any request
failed or was answered wrongly.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import io
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
N_PICTURES = 256


def pictures(scale: int = 1, n: int = N_PICTURES) -> list[bytes]:
    """The first `n` MNIST test digits as PNGs, white on black, 28x28 or `scale` times that
    (bilinear: 10 gives the page's 280x280)."""
    from PIL import Image

    sys.path.insert(0, str(REPO))
    from arraynet.data import DataError, load_mnist

    try:
        images = load_mnist(download=False, quiet=True).test_images[:n]
    except DataError as e:
        raise SystemExit(f"load_test_serve: {str(e).splitlines()[0]}") from None
    out = []
    for a in images:
        im = Image.fromarray(a)
        if scale > 1:
            im = im.resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def big_picture() -> bytes:
    """A 4096x4096 PNG of a drawn 7 (under the 1 MiB limit): the costliest accepted body."""
    from PIL import Image, ImageDraw

    im = Image.new("L", (4096, 4096), 0)
    ImageDraw.Draw(im).line([(800, 800), (3300, 800), (1700, 3800)], fill=255, width=320)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


class Conn:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict, bytes]:
        """(status, headers, body) of one request; raises OSError or EOFError when broken."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            self.writer.write(head.encode() + body)
            await self.writer.drain()
            raw = await self.reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            data = await self.reader.readexactly(int(headers.get("content-length", "0")))
        except (OSError, EOFError, asyncio.IncompleteReadError, ValueError, IndexError):
            self.close()
            raise EOFError("connection broken") from None
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Tally:
    """What the clients saw."""

    def __init__(self) -> None:
        self.ok: list[float] = []
        self.health: list[float] = []
        self.big_ok = self.big_refused = 0
        self.overloaded = self.errors = self.wrong = 0
        self.error_kinds: dict[str, int] = {}
        self.cpu_start: tuple[float | None, float] = (None, 0.0)
        self.server_cpu: float | None = None
        self.client_cpu = 0.0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def client(
    k: int, host: str, port: int, bodies: list[bytes], expect: list[int], end: float, t: Tally
) -> None:
    """Post pictures k, k+1, ... until `end`; check each answer against `expect`."""
    conn = Conn(host, port)
    i = k
    while time.monotonic() < end:
        j = i % len(bodies)
        start = time.monotonic()
        try:
            status, headers, data = await conn.request("POST", "/predict", bodies[j])
        except EOFError:
            t.error("connection")
            await asyncio.sleep(0.05)
            continue
        took = time.monotonic() - start
        if status == 200:
            t.ok.append(took)
            if json.loads(data)["digit"] != expect[j]:
                t.wrong += 1
            i += 1
        elif status == 503:
            t.overloaded += 1
            await asyncio.sleep(min(1.0, float(headers.get("retry-after", "1"))))
        else:
            t.error(f"status {status}")
            i += 1
    conn.close()


async def big_client(host: str, port: int, body: bytes, end: float, t: Tally) -> None:
    """Post the 4096x4096 picture in a loop until `end`."""
    conn = Conn(host, port)
    while time.monotonic() < end:
        try:
            status, headers, _ = await conn.request("POST", "/predict", body)
        except EOFError:
            t.error("connection (big)")
            await asyncio.sleep(0.05)
            continue
        if status == 200:
            t.big_ok += 1
        elif status == 503:
            t.big_refused += 1
            await asyncio.sleep(min(1.0, float(headers.get("retry-after", "1"))))
        else:
            t.error(f"status {status} (big)")
    conn.close()


def poll_health(
    host: str, port: int, seconds: float, every: float
) -> tuple[list[float], list[str]]:
    """GET /healthz every `every` seconds for `seconds`, on its own connection: the
    latencies of the 200s and what went wrong otherwise. It runs in a process of its own,
    so that the clients' event loop does not delay it."""
    import http.client

    lat: list[float] = []
    errors: list[str] = []
    conn = http.client.HTTPConnection(host, port, timeout=30)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            conn.request("GET", "/healthz", headers={"Host": f"127.0.0.1:{port}"})
            r = conn.getresponse()
            r.read()
        except (OSError, http.client.HTTPException):
            errors.append("connection (healthz)")
            conn.close()
            continue
        if r.status == 200:
            lat.append(time.monotonic() - start)
        else:
            errors.append(f"status {r.status} (healthz)")
        time.sleep(max(0.0, every - (time.monotonic() - start)))
    conn.close()
    return lat, errors


async def reference(host: str, port: int, bodies: list[bytes]) -> list[int]:
    """Each picture's answer, asked one at a time."""
    conn = Conn(host, port)
    out = []
    for body in bodies:
        status, _, data = await conn.request("POST", "/predict", body)
        if status != 200:
            raise SystemExit(f"load_test_serve: the server answered {status}: {data[:200]!r}")
        out.append(json.loads(data)["digit"])
    conn.close()
    return out


async def run(args: argparse.Namespace, host: str, port: int) -> Tally:
    bodies = pictures(args.scale)
    expect = await reference(host, port, bodies)
    big = big_picture() if args.big_clients else b""
    t = Tally()
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as poller:
        await loop.run_in_executor(poller, time.monotonic)  # started before the clock
        t.cpu_start = (
            cpu_seconds(args.server_pid) if args.server_pid else None,
            time.process_time(),
        )
        end = time.monotonic() + args.seconds
        health = loop.run_in_executor(
            poller, poll_health, host, port, args.seconds, args.health_every
        )
        tasks = [client(k, host, port, bodies, expect, end, t) for k in range(args.clients)]
        tasks += [big_client(host, port, big, end, t) for _ in range(args.big_clients)]
        await asyncio.gather(*tasks)
        server_cpu = cpu_seconds(args.server_pid) if args.server_pid else None
        t.health, health_errors = await health
    for kind in health_errors:
        t.error(kind)
    if server_cpu is not None and t.cpu_start[0] is not None:
        t.server_cpu = server_cpu - t.cpu_start[0]
    t.client_cpu = time.process_time() - t.cpu_start[1]
    return t


def load_average() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(limit: float, patience: float) -> float:
    """Wait (checking every minute, at most `patience` seconds) until the 1-minute load
    average is at most `limit`; the load average measured last."""
    deadline = time.monotonic() + patience
    while (load := load_average()) > limit and time.monotonic() < deadline:
        print(f"load average {load:.2f} > {limit}: waiting a minute", file=sys.stderr, flush=True)
        time.sleep(60)
    return load


def start_server(repo: Path, weights: Path, extra: list[str]) -> tuple[subprocess.Popen, int]:
    """`arraynet serve WEIGHTS --port 0` of the checkout `repo`, and the port it printed."""
    cmd = [sys.executable, "-m", "arraynet.cli", "serve", str(weights), "--port", "0", *extra]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    err = tempfile.TemporaryFile("w+")  # noqa: SIM115 (not a pipe: nobody reads it meanwhile)
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    line = proc.stdout.readline()
    m = re.search(r":(\d+)/", line)
    if m is None:
        proc.kill()
        proc.wait()
        err.seek(0)
        raise SystemExit(f"load_test_serve: the server did not start: {line}{err.read()[-2000:]}")
    return proc, int(m.group(1))


def cpu_seconds(pid: int) -> float | None:
    """The CPU time (user + system) a process has used, from /proc; None where it lacks it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident memory (VmHWM), in MB; None where /proc lacks it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def pct(xs: list[float], q: float) -> float | None:
    """The q-th percentile of xs in milliseconds (nearest rank), None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    return 1000 * s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


def summary(t: Tally, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "requests_per_s": round(len(t.ok) / args.seconds, 1),
        "answers": len(t.ok),
        "predict_p50_ms": _r(pct(t.ok, 50)),
        "predict_p99_ms": _r(pct(t.ok, 99)),
        "predict_mean_ms": _r(1000 * statistics.fmean(t.ok) if t.ok else None),
        "healthz_p50_ms": _r(pct(t.health, 50)),
        "healthz_p99_ms": _r(pct(t.health, 99)),
        "healthz_max_ms": _r(1000 * max(t.health) if t.health else None),
        "healthz_polls": len(t.health),
        "status_503": t.overloaded,
        "errors": t.errors,
        "error_kinds": t.error_kinds,
        "wrong_answers": t.wrong,
        "big_answers": t.big_ok,
        "big_503": t.big_refused,
        "server_cpu_s": _r(t.server_cpu),
        "server_cpu_ms_per_answer": _r(1000 * t.server_cpu / len(t.ok))
        if t.server_cpu is not None and t.ok
        else None,
        "client_cpu_s": _r(t.client_cpu),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=Path("models/best.safetensors"))
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--scale", type=int, default=1, help="picture size: 28 times this")
    p.add_argument(
        "--repo", type=Path, default=REPO, help="the checkout whose server runs (a baseline)"
    )
    p.add_argument("--big-clients", type=int, default=0, help="clients posting 4096x4096 PNGs")
    p.add_argument("--health-every", type=float, default=0.05, help="seconds between polls")
    p.add_argument("--url", help="a running server (http://127.0.0.1:PORT) instead of one started")
    p.add_argument("--server-pid", type=int, help="with --url: the server's process id")
    p.add_argument("--server-arg", action="append", default=[], help="passed to arraynet serve")
    p.add_argument("--max-load", type=float, help="wait until the 1-minute load is at most this")
    p.add_argument("--wait-load", type=float, default=900.0, help="seconds to wait, at most")
    p.add_argument("--label", default="", help="a note stored in the JSON")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.scale < 1:
        p.error("--clients, --seconds and --scale must be positive")

    load = wait_for_quiet(args.max_load, args.wait_load) if args.max_load is not None else None
    load = load_average() if load is None else load
    proc = None
    if args.url:
        m = re.fullmatch(r"http://([^:/]+):(\d+)/?", args.url)
        if m is None:
            p.error("--url wants http://HOST:PORT")
        host, port = m.group(1), int(m.group(2))
    else:
        weights = args.weights if args.weights.exists() else REPO / args.weights
        proc, port = start_server(args.repo.resolve(), weights.resolve(), args.server_arg)
        host = "127.0.0.1"
    args.server_pid = proc.pid if proc is not None else args.server_pid
    try:
        t = asyncio.run(run(args, host, port))
        rss = peak_rss_mb(proc.pid) if proc else None
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    res = summary(t, args)
    res["server_peak_rss_mb"] = _r(rss)
    record = {
        "script": "scripts/load_test_serve.py",
        "argv": sys.argv[1:] if argv is None else argv,
        "label": args.label,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_1min_at_start": round(load, 2),
        "load_average_1min_at_end": round(load_average(), 2),
        "weights": str(args.weights),
        "clients": args.clients,
        "big_clients": args.big_clients,
        "picture_size": 28 * args.scale,
        "server": "this checkout" if args.repo.resolve() == REPO else str(args.repo),
        "seconds": args.seconds,
        "results": res,
    }
    print(
        f"{res['requests_per_s']} requests/s ({res['answers']} answers in {args.seconds:g} s, "
        f"{args.clients} clients); /predict p50 {res['predict_p50_ms']} ms, "
        f"p99 {res['predict_p99_ms']} ms; /healthz p99 {res['healthz_p99_ms']} ms "
        f"(max {res['healthz_max_ms']}); 503s {res['status_503']}, errors {res['errors']}, "
        f"wrong {res['wrong_answers']}; server CPU {res['server_cpu_ms_per_answer']} ms an "
        f"answer, peak RSS {res['server_peak_rss_mb']} MB; "
        f"load average {record['load_average_1min_at_start']}"
    )
    if args.big_clients:
        print(f"big pictures: {res['big_answers']} answered, {res['big_503']} refused with 503")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        tmp.replace(args.json)
    return 1 if t.errors or t.wrong else 0


if __name__ == "__main__":
    sys.exit(main())
