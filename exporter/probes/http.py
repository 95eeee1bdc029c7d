"""HTTP(S) prober: one request with aiohttp, judged by its status code.

Every attempt opens a fresh connection (no pooling, no DNS cache) and ignores proxy environment
variables, so it goes straight to the target like the workload it stands for. Redirects are not
followed: a 3xx is the answer and is compared with ``expect_status``. The body is not read.

Outcomes: ``success`` (status in ``expect_status``), ``http_status_mismatch`` (another status, or a
reply that is not HTTP), ``tls_error`` (handshake or certificate failure), ``refused``,
``unreachable``, ``dns_*`` for a host name the system resolver cannot resolve, ``timeout``.
"""

from __future__ import annotations

import socket
import ssl

import aiohttp

from exporter import __version__
from exporter.probes.config import HttpParams, Probe
from exporter.probes.net import describe_oserror, outcome_for_gaierror, outcome_for_oserror
from exporter.probes.outcome import Attempt, Outcome

USER_AGENT = f"calico-exporter-probe/{__version__}"


def _ssl_for(params: HttpParams) -> ssl.SSLContext | bool:
    if not params.url.startswith("https:") or not params.ca_file:
        return True
    return ssl.create_default_context(cafile=params.ca_file)


async def probe_http(probe: Probe) -> Attempt:
    """Send ``method`` to the ``target`` URL once and compare the status with expect_status."""
    params = probe.params
    assert isinstance(params, HttpParams)
    try:
        ssl_arg = _ssl_for(params)
    except (OSError, ssl.SSLError) as exc:
        return Attempt(Outcome.ERROR, f"cannot load ca_file {params.ca_file}: {exc}")
    connector = aiohttp.TCPConnector(force_close=True, use_dns_cache=False, limit=1)
    try:
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=probe.timeout),
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        ) as session, session.request(
            params.method, params.url, allow_redirects=False, ssl=ssl_arg
        ) as response:
            status = response.status
    except aiohttp.ClientSSLError as exc:
        return Attempt(Outcome.TLS_ERROR, f"TLS: {exc.os_error}")
    except ssl.SSLError as exc:
        return Attempt(Outcome.TLS_ERROR, f"TLS: {exc}")
    except aiohttp.ClientConnectorDNSError as exc:
        error = exc.os_error
        outcome = (outcome_for_gaierror(error) if isinstance(error, socket.gaierror)
                   else Outcome.ERROR)
        return Attempt(outcome, f"cannot resolve {exc.host}: {error.strerror}")
    except aiohttp.ClientConnectorError as exc:
        return Attempt(outcome_for_oserror(exc.os_error),
                       f"connect {exc.host}:{exc.port}: {describe_oserror(exc.os_error)}")
    except TimeoutError:
        return Attempt(Outcome.TIMEOUT, f"no response within {probe.timeout:g}s")
    except aiohttp.ServerDisconnectedError:
        return Attempt(Outcome.REFUSED, "server closed the connection before responding")
    except aiohttp.ClientResponseError as exc:
        return Attempt(Outcome.HTTP_STATUS_MISMATCH, f"not a valid HTTP response: {exc.message}")
    except aiohttp.ClientOSError as exc:
        return Attempt(outcome_for_oserror(exc), f"request: {describe_oserror(exc)}")
    except aiohttp.ClientError as exc:
        return Attempt(Outcome.ERROR, f"request failed: {exc!r}")
    if params.status_ok(status):
        return Attempt(Outcome.SUCCESS, f"status {status}")
    return Attempt(Outcome.HTTP_STATUS_MISMATCH, f"status {status} not in expect_status")


__all__ = ["USER_AGENT", "probe_http"]
