"""The ceiling for bench.throughput: a bare Flask JSON endpoint, served like the API.

    gunicorn 'bench.ceiling:app' --workers 4 --threads 4 ...   (bench.throughput starts it)

No database, no auth, no middleware: what gunicorn and Flask cost per request on this
machine, so the API's figures can be read as a share of it.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify

app = Flask(__name__)


@app.get("/ping")
def ping() -> Response:
    """A small JSON document."""
    return jsonify(status="ok")


@app.get("/healthz")
def healthz() -> Response:
    """What the benchmark polls to know the server is up."""
    return jsonify(status="ok")
