"""A thin door to the Kubernetes API through the official ``kubernetes`` client, answering in plain JSON.

The client does the hard parts (kubeconfig and contexts, auth plugins, TLS, serialization, retries); this
wrapper only builds REST paths for the few kinds the suite touches and returns the API server's JSON as
dicts, so the judgements in :mod:`park.conformance.judgements` read exactly what the server sent — and the
unit tests can replay recorded responses (tests/fixtures/k8s/) under the same client code.
"""

from __future__ import annotations

import json
from typing import Any

REQUEST_TIMEOUT_S = 15

# (apiVersion, kind) -> (plural, namespaced) of every kind the suite creates or reads by path.
KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Node"): ("nodes", False),
    ("v1", "Pod"): ("pods", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("ray.io/v1", "RayJob"): ("rayjobs", True),
    ("ray.io/v1", "RayService"): ("rayservices", True),
    ("ray.io/v1", "RayCluster"): ("rayclusters", True),
    ("kueue.x-k8s.io/v1beta2", "ClusterQueue"): ("clusterqueues", False),
    ("kueue.x-k8s.io/v1beta2", "LocalQueue"): ("localqueues", True),
    ("kueue.x-k8s.io/v1beta2", "Workload"): ("workloads", True),
}


class KubeError(RuntimeError):
    """An API call failed; the message names the call, the HTTP status and the server's reason."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def collection_path(api_version: str, kind: str, namespace: str | None = None) -> str:
    """``/api/v1/namespaces/ns/pods``, ``/apis/ray.io/v1/namespaces/ns/rayjobs``, ``/api/v1/nodes``..."""
    try:
        plural, namespaced = KINDS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"the suite does not know the REST path of {api_version} {kind}") from None
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced and namespace is not None:
        return f"{base}/namespaces/{namespace}/{plural}"
    return f"{base}/{plural}"


def object_path(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{collection_path(obj['apiVersion'], obj['kind'], meta.get('namespace'))}/{meta['name']}"


class KubeApi:
    """JSON in, JSON out, over an official ``kubernetes.client.ApiClient``."""

    def __init__(self, api_client: Any):
        self.api_client = api_client

    @property
    def host(self) -> str:
        return self.api_client.configuration.host

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        """One call; JSON answers are decoded, others returned as text. Raises KubeError on failure."""
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api_client.call_api(*serialized, _request_timeout=REQUEST_TIMEOUT_S)
            data = response.read()
        except ApiException as err:
            raise KubeError(
                f"{method} {path}: {err.status} {err.reason}: {_status_message(err.body)}", err.status
            ) from None
        except Exception as err:  # noqa: BLE001 - connection refused, DNS, TLS: say where we tried
            raise KubeError(f"{method} {self.host}{path}: {type(err).__name__}: {err}") from None
        if response.status >= 400:
            raise KubeError(
                f"{method} {path}: {response.status} {response.reason}: {_status_message(data)}",
                response.status,
            )
        text = data.decode() if isinstance(data, bytes) else str(data)
        try:
            return json.loads(text)
        except ValueError:
            return text

    # -- reads --

    def version(self) -> dict:
        return self.request("GET", "/version")

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> dict:
        query = {"labelSelector": label_selector} if label_selector else None
        return self.request("GET", collection_path(api_version, kind, namespace), query=query)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        """The object, or None when the server says 404."""
        try:
            return self.request("GET", f"{collection_path(api_version, kind, namespace)}/{name}")
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def pod_log(self, namespace: str, name: str, tail_lines: int = 200) -> str:
        return self.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods/{name}/log",
            query={"tailLines": str(tail_lines)},
            accept="text/plain",
        )

    def service_proxy(
        self,
        method: str,
        namespace: str,
        service: str,
        port: int | str,
        path: str,
        query: dict[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        """A request to a Service through the API server's proxy (no port-forward, no ingress needed)."""
        return self.request(
            method,
            f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}",
            body=body,
            query=query,
        )

    # -- writes --

    def create(self, obj: dict) -> dict:
        meta = obj["metadata"]
        return self.request(
            "POST", collection_path(obj["apiVersion"], obj["kind"], meta.get("namespace")), body=obj
        )

    def delete(self, obj: dict) -> None:
        """Delete in the background (children by garbage collection); a missing object is fine."""
        try:
            self.request("DELETE", object_path(obj), body={"propagationPolicy": "Background"})
        except KubeError as err:
            if err.status != 404:
                raise


def _status_message(body: Any) -> str:
    """The ``message`` of a Kubernetes Status answer, else the raw body (short)."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        return json.loads(body).get("message", str(body))[:500]
    except (TypeError, ValueError, AttributeError):
        return str(body)[:500]
