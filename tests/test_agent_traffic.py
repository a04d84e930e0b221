"""The agent's traffic totals: open tunnels summed in one pass, plus what closed tunnels carried."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from scaleagent.agent import AgentService, traffic


def tunnel_protocol(bytes_in: int, bytes_out: int, frames_in: int, frames_out: int, *, session: bool = True):
    stats = SimpleNamespace(
        incomingOctetsWireLevel=bytes_in - 10, preopenIncomingOctetsWireLevel=10,
        outgoingOctetsWireLevel=bytes_out - 20, preopenOutgoingOctetsWireLevel=20,
    )
    counted = SimpleNamespace(stats=SimpleNamespace(messages_received=frames_in, messages_sent=frames_out))
    return SimpleNamespace(trafficStats=stats, session=counted if session else None)


def test_totals_equal_the_sum_of_each_tunnels_traffic_and_the_closed_ones():
    protocols = [tunnel_protocol(100, 200, 3, 4), tunnel_protocol(1000, 50, 7, 1), None,
                 tunnel_protocol(40, 60, 0, 0, session=False)]
    runners = {
        0: SimpleNamespace(tunnels={"main": SimpleNamespace(protocol=protocols[0]),
                                    "steve": SimpleNamespace(protocol=protocols[1])}),
        1: SimpleNamespace(tunnels={"main": SimpleNamespace(protocol=protocols[2]),
                                    "steve": SimpleNamespace(protocol=protocols[3])}),
    }
    agent = SimpleNamespace(runners=runners, closed_traffic=Counter(bytes_in=5, frames_out=2))
    expected = Counter(agent.closed_traffic)
    for protocol in protocols:
        if protocol is not None:
            expected.update(traffic(protocol))
    assert AgentService.traffic_totals(agent) == expected
    assert expected == Counter(bytes_in=1145, bytes_out=310, frames_in=10, frames_out=7)
