"""The raw-JSON Kubernetes API client, the only place that configures kubernetes-asyncio.

kubernetes-asyncio provides configuration (kubeconfig, in-cluster service account with token
refresh, TLS) and the authenticated HTTP transport. We call it with ``_preload_content=False`` and
decode bodies ourselves with orjson: no typed model object is ever built, which is what keeps the
watch path fast (see ``bench/``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import yaml
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from exporter.config import ConfigError, KubeSettings, load_yaml
from exporter.kube.resources import Resource
from exporter.model import RawObject

MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """The API answered with an error Status (or not at all: status 0)."""

    def __init__(self, status: int, reason: str, message: str, *,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def _error(resp: aiohttp.ClientResponse) -> ApiError:
    """Turn an error response (a Status object, ideally) into an ApiError."""
    body = await resp.read()
    reason, message = resp.reason or "", body[:200].decode("utf-8", "replace")
    try:
        status = orjson.loads(body)
        if isinstance(status, dict):
            reason = str(status.get("reason") or reason)
            message = str(status.get("message") or message)
    except orjson.JSONDecodeError:
        pass
    return ApiError(resp.status, reason, message, retry_after=_retry_after(resp.headers))


class KubeApi:
    """Raw JSON requests against the API server the ApiClient is configured for."""

    def __init__(self, api_client: Any, *, timeout: float) -> None:
        self._api = api_client
        self._timeout = timeout

    async def open(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one request and return the open response (status already checked)."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            resp: aiohttp.ClientResponse = await self._api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout or aiohttp.ClientTimeout(total=self._timeout),
            )
        except k8s_client.ApiException as exc:  # raised before sending, e.g. bad arguments
            raise ApiError(int(exc.status or 0), str(exc.reason), str(exc.body)) from None
        if resp.status >= 300:
            try:
                raise await _error(resp)
            finally:
                resp.release()
        return resp

    async def request(self, method: str, path: str, **kwargs: Any) -> RawObject:
        """One request whose JSON response body is returned as a dict."""
        resp = await self.open(method, path, **kwargs)
        async with resp:
            data = await resp.read()
        obj = orjson.loads(data)
        if not isinstance(obj, dict):
            raise ApiError(resp.status, "BadResponse", "response body is not a JSON object")
        return obj

    async def list(self, resource: Resource, *, query: Mapping[str, str] | None = None,
                   namespace: str | None = None) -> RawObject:
        return await self.request("GET", resource.path(namespace=namespace), query=query)

    async def get(self, resource: Resource, name: str, *,
                  namespace: str | None = None) -> RawObject:
        return await self.request("GET", resource.path(name, namespace=namespace))

    async def create(self, resource: Resource, body: RawObject, *,
                     namespace: str | None = None) -> RawObject:
        return await self.request("POST", resource.path(namespace=namespace), body=body,
                                  content_type="application/json")

    async def patch_merge(self, resource: Resource, name: str, patch: RawObject, *,
                          namespace: str | None = None) -> RawObject:
        """RFC 7386 merge patch (kubernetes-asyncio would default to json-patch: see testing.md)."""
        return await self.request("PATCH", resource.path(name, namespace=namespace), body=patch,
                                  content_type=MERGE_PATCH)

    async def delete(self, resource: Resource, name: str, *, namespace: str | None = None,
                     uid: str | None = None) -> RawObject:
        """Delete one object; with ``uid``, only if it is still that very object."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if uid:
            body["preconditions"] = {"uid": uid}  # type: ignore[assignment]
        return await self.request("DELETE", resource.path(name, namespace=namespace), body=body,
                                  content_type="application/json")


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where Kubernetes mounts a pod's service-account token and the cluster CA."""


async def client_configuration(settings: KubeSettings, *,
                               environ: Mapping[str, str] | None = None,
                               service_account: Path = SERVICE_ACCOUNT) -> Any:
    """The kubernetes-asyncio Configuration ``connect`` uses: in-cluster config in a pod (token
    re-read as it rotates), else the kubeconfig; ConfigError with one exact message when neither
    is usable. Nothing is sent to the API server."""
    env = os.environ if environ is None else environ
    cfg = k8s_client.Configuration()
    if not settings.kubeconfig and env.get("KUBERNETES_SERVICE_HOST"):
        loader = k8s_config.incluster_config.InClusterConfigLoader(
            token_filename=str(service_account / "token"),
            cert_filename=str(service_account / "ca.crt"),
            environ=dict(env),
        )
        try:
            loader.load_and_set(cfg)
        except k8s_config.ConfigException as exc:
            raise ConfigError(f"cannot use the in-cluster service account: {exc}") from None
        return cfg
    path = (settings.kubeconfig or env.get("KUBECONFIG", "").split(":")[0]
            or str(Path.home() / ".kube" / "config"))
    if not Path(path).is_file():  # noqa: ASYNC240  (once, at start-up)
        raise ConfigError(f"invalid value for --kubeconfig (CALICO_EXPORTER_KUBECONFIG): "
                          f"no kubeconfig file at {path}")
    problem = kubeconfig_problem(path)
    if problem is None:
        try:
            await k8s_config.load_kube_config(
                config_file=path, context=settings.context or None, client_configuration=cfg
            )
        except (k8s_config.ConfigException, ValueError, OSError) as exc:
            problem = " ".join(str(exc).split())
        except (TypeError, AttributeError, KeyError, IndexError, RecursionError) as exc:
            # kubernetes-asyncio indexes the document without checking its shape
            problem = f"malformed ({type(exc).__name__}: {exc})"
    if problem is None:
        problem = _server_problem(str(cfg.host))
    if problem is not None:
        raise ConfigError(f"invalid kubeconfig {path}: {problem}")
    return cfg


def kubeconfig_problem(path: str) -> str | None:
    """Why the file at ``path`` cannot be a kubeconfig, judged from its shape alone (UTF-8
    YAML, a mapping whose ``clusters``, ``contexts`` and ``users`` are lists of named
    mappings), or None; what kubernetes-asyncio checks itself is left to it."""
    try:
        text = Path(path).read_bytes().decode()
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte {exc.start})"
    try:
        doc = load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"not valid YAML: {exc.problem}{where}"
    except yaml.YAMLError as exc:
        return f"not valid YAML: {' '.join(str(exc).split())}"
    if not isinstance(doc, dict):
        return "not a YAML mapping"
    for key in ("clusters", "contexts", "users"):
        items = doc.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not all(
                isinstance(item, dict) and isinstance(item.get("name"), str) for item in items):
            return f"{key} must be a list of mappings with a name"
    for key in ("current-context", "kind", "apiVersion"):
        if not isinstance(doc.get(key, ""), str):
            return f"{key} must be a string"
    return None


def _server_problem(host: str) -> str | None:
    """Why the API server address the kubeconfig gave cannot be requested, or None."""
    try:
        url = urlsplit(host)
        url.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        return f"server {host!r} is not a URL: {exc}"
    if url.scheme not in ("http", "https") or not url.hostname:
        return f"server {host!r} is not an http:// or https:// URL"
    return None


@asynccontextmanager
async def connect(settings: KubeSettings, *, environ: Mapping[str, str] | None = None,
                  service_account: Path = SERVICE_ACCOUNT) -> AsyncIterator[KubeApi]:
    """A KubeApi for the configured cluster (see :func:`client_configuration`)."""
    cfg = await client_configuration(settings, environ=environ, service_account=service_account)
    async with k8s_client.ApiClient(cfg) as api_client:
        api_client.user_agent = "calico-exporter"
        yield KubeApi(api_client, timeout=settings.api_timeout)
