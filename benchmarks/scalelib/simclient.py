"""A small blocking client of one stand-in's management API (the benchmark's view of Rancher)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any


class SimClient:
    def __init__(self, url: str, token: str, ca_file: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._context = ssl.create_default_context(cafile=ca_file)
        self.timeout = timeout
        self.has_status: bool | None = None  # learnt on the first GET /sim/status

    def _request(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"Bearer {self._token}"}
        )
        with urllib.request.urlopen(request, context=self._context, timeout=self.timeout) as answer:
            return json.loads(answer.read())

    def clusters(self) -> list[dict[str, Any]]:
        """Every cluster the stand-in knows: id, name, state, tunnels {main, steve}."""
        return self._request("GET", "/sim/clusters")["clusters"]

    def status(self) -> dict[str, Any] | None:
        """`/sim/status` (counts and the driver's latency records); None if this stand-in lacks it."""
        if self.has_status is False:
            return None
        try:
            answer = self._request("GET", "/sim/status")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                self.has_status = False
                return None
            raise
        self.has_status = True
        return answer

    def cut_all(self) -> int | None:
        """Drop every tunnel at once (`POST /sim/tunnels/cut`); None when the stand-in lacks it."""
        try:
            return int(self._request("POST", "/sim/tunnels/cut").get("cut", 0))
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def disconnect(self, cluster_id: str) -> int:
        return int(self._request("POST", f"/sim/clusters/{cluster_id}/disconnect").get("closed", 0))


__all__ = ["SimClient"]
