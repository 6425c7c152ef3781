"""The TLS settings closeflow's HTTP clients verify servers with, made once per process.

httpx builds a new SSL context for every client it creates, loading certifi's whole CA bundle:
about 50 ms of CPU each, measured on the project's machine, and several clients live for one
request (a dashboard read, a late booking passed to outreach). An SSL context is meant to be
shared: one serves every client, with the same choice of CAs httpx makes itself.
"""

from __future__ import annotations

import functools
import os
import ssl

import certifi


@functools.cache
def client_context() -> ssl.SSLContext:
    """httpx's default verification (`SSL_CERT_FILE`, else `SSL_CERT_DIR`, else certifi's
    bundle), built once."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    return ssl.create_default_context(cafile=certifi.where())
