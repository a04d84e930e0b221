"""The status page on the admin listener (`GET /`), its JSON (`GET /status`) and the churn routes.

One self-contained HTML page (inline CSS and SVG, no script, no external assets, so it works offline
and behind any proxy): clusters by phase, tunnels up, Rancher's view (the states the agent last polled),
the ramp and reconnect rates over the last minutes as a small chart, churn and faults, last errors.
It refreshes itself every 10 s (a meta refresh).

`StatusHistory` samples the agent's counters every `interval` seconds (child service of the agent,
"status-history"), which the chart and the per-minute rates are drawn from.

`AdminExtension` wraps the admin API's resource: `/`, `/status`, `/churn` and `/churn/<action>` here,
everything else passed through; changes need what the admin API needs (its token check).

    GET  /                  the page (text/html)
    GET  /status            {"ready", "counts", "rates", "history", "churn", "errors", ...}
    GET  /churn             rates, actions so far, clusters away/unhealthy/slow, recent actions
    POST /churn             {"<[churn] key>": value, ...}: change rates at run time
    POST /churn/<action>    leave|drop|unhealthy|slow|pods with {"clusters": [...]} or {"count": n} ...
"""

from __future__ import annotations

import html
import json
from collections import deque
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from scaleagent.admin import json_response
from scaleagent.churn import ChurnCollector, ChurnError, churn_of
from scaleagent.redact import logger

log = logger()

NAME = "status-history"
INTERVAL = 10.0
WINDOW = 30 * 60.0
MAX_BODY = 64 * 1024
HTML = b"text/html; charset=utf-8"
CHART_W, CHART_H = 640, 160


class StatusHistory(Service):
    """Samples of (time, registered, reconnects, tunnels, active) every `interval` s, `window` long."""

    def __init__(self, agent: Any, clock: Any, interval: float = INTERVAL, window: float = WINDOW) -> None:
        self.setName(NAME)
        self.agent = agent
        self.clock = clock
        self.interval = interval
        self.samples: deque[dict[str, float]] = deque(maxlen=max(2, int(window / interval) + 1))
        self._loop: task.LoopingCall | None = None

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        super().startService()
        self._loop = task.LoopingCall(self.sample)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: log.failure("status: sampling failed", f)
        )

    def stopService(self) -> Any:  # noqa: N802 (Twisted's name)
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def sample(self) -> None:
        agent = self.agent
        counts = agent.counts()
        self.samples.append(
            {
                "t": float(self.clock.seconds()),
                "registered": float(agent.registered),
                "reconnects": float(agent.reconnects),
                "tunnels": float(counts["connected_main"] + counts["connected_steve"]),
                "active": float(counts["rancher_state"].get("active", 0)),
            }
        )

    def rates(self) -> list[dict[str, float]]:
        """Per-second registration and reconnect rates between consecutive samples."""
        out = []
        items = list(self.samples)
        for before, after in zip(items, items[1:]):
            span = after["t"] - before["t"]
            if span <= 0:
                continue
            out.append(
                {
                    "t": after["t"],
                    "registrations": (after["registered"] - before["registered"]) / span,
                    "reconnects": (after["reconnects"] - before["reconnects"]) / span,
                    "tunnels": after["tunnels"],
                    "active": after["active"],
                }
            )
        return out

    def per_minute(self, key: str, minutes: float = 5.0) -> float:
        """Average per-minute increase of a counter over the last `minutes` (what the page shows)."""
        items = list(self.samples)
        if len(items) < 2:
            return 0.0
        last = items[-1]
        first = next((s for s in items if s["t"] >= last["t"] - minutes * 60), items[0])
        span = last["t"] - first["t"]
        return (last[key] - first[key]) * 60.0 / span if span > 0 else 0.0


def history_of(agent: Any, clock: Any = None) -> StatusHistory:
    """The agent's sampler (child service "status-history"), made and attached on first use."""
    try:
        return agent.getServiceNamed(NAME)
    except KeyError:
        pass
    history = StatusHistory(agent, clock if clock is not None else agent.clock)
    history.setServiceParent(agent)
    return history


def last_errors(agent: Any, limit: int = 10) -> list[dict[str, str]]:
    """Clusters whose last attempt failed (newest state, lowest indices first), and a startup error."""
    out = []
    if getattr(agent, "server_error", ""):
        out.append({"cluster": "(Rancher)", "error": agent.server_error})
    for runner in sorted(agent.runners.values(), key=lambda r: r.index):
        if runner.last_error:
            out.append({"cluster": runner.name, "error": runner.last_error})
            if len(out) >= limit:
                break
    return out


def status_json(agent: Any) -> dict[str, Any]:
    """Everything the page shows, as data (also `GET /status`)."""
    counts = agent.counts()
    history = history_of(agent)
    engine = churn_of(agent)
    return {
        "ready": bool(agent.ready),
        "counts": counts,
        "tunnels_up": counts["connected_main"] + counts["connected_steve"],
        "totals": {
            "registrations": agent.registered,
            "reconnects": agent.reconnects,
            "reimports": agent.reimported,
            "deletions": agent.deleted,
            "errors": agent.errors.total,
        },
        "rates_per_minute": {
            "registrations": round(history.per_minute("registered"), 2),
            "reconnects": round(history.per_minute("reconnects"), 2),
        },
        "history": history.rates(),
        "churn": engine.to_json(),
        "errors": last_errors(agent),
    }


# -- the page -------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 .2em}h2{font-size:15px;margin:1.2em 0 .4em}
.sub{color:#666;margin-bottom:1em}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:120px}
.card .n{font-size:24px;font-weight:600}.card .l{color:#666;font-size:12px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:3px 10px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.err{color:#a00}.ok{color:#070}svg{background:#fff;border:1px solid #ddd}
"""


def _card(key: str, label: str, value: Any) -> str:
    return (
        f'<div class="card"><div class="n" id="{key}" data-value="{html.escape(str(value))}">'
        f'{html.escape(str(value))}</div><div class="l">{html.escape(label)}</div></div>'
    )


def _table(prefix: str, rows: dict[str, Any], empty: str) -> str:
    if not rows:
        return f"<p>{html.escape(empty)}</p>"
    body = "".join(
        f'<tr><td>{html.escape(str(k))}</td><td class="num" id="{prefix}-{html.escape(str(k))}">'
        f"{html.escape(str(v))}</td></tr>"
        for k, v in sorted(rows.items())
    )
    return f"<table>{body}</table>"


def chart(points: list[dict[str, float]]) -> str:
    """Registrations/s and reconnects/s over the sampled window, as inline SVG."""
    w, h, pad = CHART_W, CHART_H, 30
    if not points:
        return (
            f'<svg id="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">'
            f'<text x="{pad}" y="{h // 2}" fill="#666">no samples yet</text></svg>'
        )
    t0, t1 = points[0]["t"], points[-1]["t"]
    span = max(t1 - t0, 1e-9)
    top = max(max(p["registrations"] for p in points), max(p["reconnects"] for p in points), 1.0)

    def xy(p: dict[str, float], key: str) -> str:
        x = pad + (p["t"] - t0) / span * (w - 2 * pad) if len(points) > 1 else w - pad
        y = h - pad - p[key] / top * (h - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    minutes = (t1 - t0) / 60.0
    lines = []
    for key, colour in (("registrations", "#1565c0"), ("reconnects", "#c62828")):
        coords = " ".join(xy(p, key) for p in points)
        lines.append(
            f'<polyline id="line-{key}" fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>'
        )
    return (
        f'<svg id="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="registrations and reconnects per second">'
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#999"/>'
        f'<text x="2" y="{pad + 4}" font-size="11" fill="#666">{top:.1f}/s</text>'
        f'<text x="2" y="{h - pad + 4}" font-size="11" fill="#666">0</text>'
        f'<text x="{pad}" y="{h - 8}" font-size="11" fill="#666">-{minutes:.1f} min</text>'
        f'<text x="{w - pad - 20}" y="{h - 8}" font-size="11" fill="#666">now</text>'
        + "".join(lines)
        + f'<text x="{w - 230}" y="16" font-size="12" fill="#1565c0">registrations/s</text>'
        f'<text x="{w - 120}" y="16" font-size="12" fill="#c62828">reconnects/s</text></svg>'
    )


def render_page(status: dict[str, Any]) -> bytes:
    counts = status["counts"]
    churn = status["churn"]
    cards = "".join(
        (
            _card("owned", "clusters in this shard", counts["owned"]),
            _card("registered", "registered", counts["registered"]),
            _card("fully-connected", "both tunnels up", counts["fully_connected"]),
            _card("tunnels-up", "tunnels up", status["tunnels_up"]),
            _card("connected-main", "main tunnels", counts["connected_main"]),
            _card("connected-steve", "steve tunnels", counts["connected_steve"]),
            _card("active", "active in Rancher", counts["rancher_state"].get("active", 0)),
            _card("queued", "queued", counts["queued"]),
        )
    )
    rates = status["rates_per_minute"]
    totals = status["totals"]
    errors = status["errors"]
    error_rows = "".join(
        f'<tr><td>{html.escape(e["cluster"])}</td><td class="err">{html.escape(e["error"])}</td></tr>'
        for e in errors
    )
    recent = "".join(f"<li>{html.escape(r['text'])}</li>" for r in reversed(churn["recent"]))
    ready = '<span class="ok">ready</span>' if status["ready"] else '<span class="err">not ready</span>'
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<meta name="viewport" content="width=device-width"><link rel="icon" href="data:,">
<title>scaleagent {html.escape(counts["shard"])}</title><style>{CSS}</style></head>
<body>
<h1>scaleagent, shard {html.escape(counts["shard"])}</h1>
<div class="sub">{counts["total"]} clusters over all shards; agent {ready}</div>
<div class="cards">{cards}</div>
<h2>Clusters by phase</h2>{_table("phase", counts["phase"], "no clusters yet")}
<h2>Rancher's view</h2>{_table("rancher", counts["rancher_state"], "not polled yet")}
<h2>Ramp and reconnects</h2>
<p>last 5 min: <b id="rate-registrations">{rates["registrations"]}</b> registrations/min,
<b id="rate-reconnects">{rates["reconnects"]}</b> reconnects/min; totals: {totals["registrations"]}
registrations, <span id="total-reconnects">{totals["reconnects"]}</span> reconnects,
{totals["reimports"]} re-imports, {totals["deletions"]} deletions</p>
{chart(status["history"])}
<h2>Churn and faults</h2>{_table("churn-now", churn["now"], "")}
<p>actions so far:</p>{_table("churn", churn["actions"], "")}
<ul id="churn-recent">{recent}</ul>
<h2>Last errors (<span id="errors-total">{totals["errors"]}</span> in all)</h2>
{f'<table id="errors">{error_rows}</table>' if errors else '<p id="errors">none</p>'}
</body></html>
"""
    return page.encode()


# -- routing --------------------------------------------------------------------------------------


def resolve_agent(obj: Any) -> Any:
    """The AgentService behind an admin target (`EmbeddedRancher` holds it as `.agent`)."""
    if hasattr(obj, "when_agent"):
        return obj.agent
    return obj


class AdminExtension(Resource):
    """The admin API's resource plus `/`, `/status` and `/churn[/<action>]`; see the module docstring."""

    isLeaf = True

    def __init__(self, admin: Resource, target: Any, registry: Any = None) -> None:
        super().__init__()
        self._admin = admin
        self._target = target
        if registry is not None:
            registry.register(ChurnCollector(_LazyAgent(target)))
        # Churn rates from [churn] and the history sampler run from the agent's start, not first view.
        if hasattr(target, "when_agent"):
            target.when_agent().addCallback(_attach)
        elif target is not None:
            _attach(target)

    def render(self, request: Request) -> bytes | int:
        path = request.path.decode("utf-8", "replace").rstrip("/") or "/"
        method = request.method.decode("ascii", "replace")
        if path not in ("/", "/status", "/churn") and not path.startswith("/churn/"):
            return self._admin.render(request)
        agent = resolve_agent(self._target)
        try:
            return self._route(request, method, path, agent)
        except Exception:
            log.failure("admin: {method} {path} failed", method=method, path=path)
            return self._json(request, 500, {"error": "internal error"})

    def _json(self, request: Request, code: int, value: Any) -> bytes:
        return json_response(request, code, value)

    def _route(self, request: Request, method: str, path: str, agent: Any) -> bytes | int:
        reading = method in ("GET", "HEAD")
        if agent is None:
            if path == "/" and reading:
                request.setHeader(b"content-type", HTML)
                return b"<!DOCTYPE html><title>scaleagent</title><p>starting...</p>"
            return self._json(request, 503, {"error": "the agent is starting"})
        if path == "/" and reading:
            request.setHeader(b"content-type", HTML)
            request.setHeader(b"cache-control", b"no-store")
            return render_page(status_json(agent))
        if path == "/status" and reading:
            return self._json(request, 200, status_json(agent))
        engine = churn_of(agent)
        if path == "/churn" and reading:
            return self._json(request, 200, engine.to_json())
        if method != "POST":
            return self._json(request, 405, {"error": f"method {method} not allowed on {path}"})
        authorized = getattr(self._admin, "_authorized", lambda _r: True)
        if not authorized(request):
            request.setHeader(b"www-authenticate", b'Bearer realm="scaleagent"')
            error = "this change needs the admin token (Authorization: Bearer)"
            return self._json(request, 401, {"error": error})
        raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(raw) > MAX_BODY:
            return self._json(request, 413, {"error": "body too large"})
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return self._json(request, 400, {"error": "expected a JSON object"})
        if path == "/churn":
            try:
                engine.set_rates(**body)
            except ChurnError as error:
                return self._json(request, 400, {"error": str(error)})
            return self._json(request, 200, engine.to_json())
        return self._action(request, engine, path[len("/churn/") :], body)

    def _action(self, request: Request, engine: Any, action: str, body: dict[str, Any]) -> int:
        d = defer.ensureDeferred(engine.request(action, body))

        def finish(code: int, value: Any) -> None:
            if not request.finished and not getattr(request, "_disconnected", False):
                request.write(self._json(request, code, value))
                request.finish()

        def failed(failure: Any) -> None:
            if failure.check(ChurnError):
                finish(400, {"error": str(failure.value)})
                return
            log.failure("admin: churn {action} failed", failure, action=action)
            finish(500, {"error": "internal error"})

        d.addCallbacks(lambda result: finish(200, result), failed)
        return NOT_DONE_YET


def _attach(agent: Any) -> Any:
    if agent is not None and hasattr(agent, "getServiceNamed"):
        churn_of(agent)
        history_of(agent)
    return agent


class _LazyAgent:
    """The agent as the churn collector sees it, resolved at scrape time (embedded mode starts late)."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def getServiceNamed(self, name: str) -> Any:  # noqa: N802 (Twisted's name)
        agent = resolve_agent(self._target)
        if agent is None:
            raise KeyError(name)
        return agent.getServiceNamed(name)


def extend_admin(admin: Resource, target: Any, registry: Any = None) -> AdminExtension:
    """Wrap the admin API's resource; pass its metrics registry to add the churn metrics."""
    return AdminExtension(admin, target, registry)


__all__ = [
    "AdminExtension",
    "StatusHistory",
    "extend_admin",
    "history_of",
    "render_page",
    "resolve_agent",
    "status_json",
]
