"""Session rules (rancher-protocol.md §3.3-§3.6), one synchronous test each: task.Clock, no sockets."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from scaleagent.remotedialer import frames
from scaleagent.remotedialer.frames import Message, MessageType
from scaleagent.remotedialer.session import Session, SessionClosed
from scaleagent.remotedialer.transport import MAX_BUFFER, MAX_DATA, RESUME_BELOW, VirtualTransport


class Recorder(Protocol):
    """Keeps what it receives and how it ended."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost = None
        self.lost_count = 0
        self.made = False

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason) -> None:
        self.lost = reason
        self.lost_count += 1

    @property
    def text(self) -> bytes:
        return b"".join(self.received)


class Echo(Recorder):
    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.transport.write(data)


class RecorderFactory(Factory):
    def __init__(self, protocol=Recorder) -> None:
        self.protocol = protocol
        self.built: list[Recorder] = []

    def buildProtocol(self, addr):
        p = super().buildProtocol(addr)
        self.built.append(p)
        return p


@implementer(IPushProducer)
class Producer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


def msg(conn_id: int, mtype: int, payload: bytes = b"") -> bytes:
    return frames.encode(Message(frames.next_message_id(), conn_id, mtype, payload))


def connect(conn_id: int, target: str = "tcp/10.43.0.1:443") -> bytes:
    return msg(conn_id, MessageType.CONNECT, target.encode())


class Harness:
    """A session with its outbound messages decoded into `sent`."""

    def __init__(self, client: bool = True, resolver=..., **kwargs) -> None:
        self.clock = Clock()
        self.sent: list[Message] = []
        self.pings = 0
        self.disconnects: list[str] = []
        self.factories = {
            ("tcp", "10.43.0.1:443"): RecorderFactory(),
            ("tcp", "127.0.0.1:7"): RecorderFactory(Echo),
        }
        if resolver is ...:
            resolver = lambda proto, address: self.factories.get((proto, address))  # noqa: E731
        self.session = Session(
            client=client,
            send=lambda data: self.sent.append(frames.decode(data)),
            clock=self.clock,
            resolver=resolver,
            ping=self._ping,
            disconnect=self.disconnects.append,
            name="c-test",
            **kwargs,
        )

    def _ping(self) -> None:
        self.pings += 1

    def feed(self, *messages: bytes) -> None:
        for m in messages:
            self.session.message_received(m)

    def take(self) -> list[Message]:
        out, self.sent = self.sent, []
        return out

    @property
    def api(self) -> list[Recorder]:
        return self.factories[("tcp", "10.43.0.1:443")].built


class ConnectTests(SynchronousTestCase):
    def test_connect_is_accepted_and_resolved_by_target(self):
        h = Harness()
        h.feed(connect(2))
        self.assertEqual(len(h.api), 1)
        p = h.api[0]
        self.assertTrue(p.made)
        self.assertEqual((p.transport.getHost().host, p.transport.getHost().port), ("10.43.0.1", 443))
        self.assertEqual(h.session.connection_ids(), [2])
        self.assertEqual(h.take(), [])  # no acknowledgement exists in remotedialer

    def test_early_data_is_delivered_in_order(self):
        h = Harness()
        h.feed(connect(2), msg(2, MessageType.DATA, b"one "), msg(2, MessageType.DATA, b"two"))
        self.assertEqual(h.api[0].received, [b"one ", b"two"])

    def test_early_data_waits_for_a_slow_resolver(self):
        pending: defer.Deferred = defer.Deferred()
        h = Harness(resolver=lambda proto, address: pending)
        h.feed(connect(2), msg(2, MessageType.DATA, b"hello "), msg(2, MessageType.DATA, b"world"))
        factory = RecorderFactory()
        pending.callback(factory)
        self.assertEqual(factory.built[0].received, [b"hello ", b"world"])

    def test_refused_connect_gets_its_own_error_and_others_keep_working(self):
        h = Harness()
        h.feed(connect(2))
        h.feed(connect(3, "tcp/10.0.0.9:80"))
        sent = h.take()
        self.assertEqual([(m.conn_id, m.type) for m in sent], [(3, MessageType.ERROR)])
        self.assertIn(b"10.0.0.9:80", sent[0].payload)
        self.assertFalse(h.session.closed)
        h.feed(msg(2, MessageType.DATA, b"still here"))
        self.assertEqual(h.api[0].received, [b"still here"])
        h.api[0].transport.write(b"reply")
        sent = [(m.conn_id, m.type, m.payload) for m in h.take()]
        self.assertEqual(sent, [(2, MessageType.DATA, b"reply")])
        self.assertEqual(h.session.connection_ids(), [2])

    def test_unparsable_connect_is_refused_alone(self):
        h = Harness()
        h.feed(msg(4, MessageType.CONNECT, b"no-slash-here"))
        sent = h.take()
        self.assertEqual([(m.conn_id, m.type) for m in sent], [(4, MessageType.ERROR)])
        self.assertIn(b"failed to parse connect address", sent[0].payload)
        h.feed(connect(5))
        self.assertEqual(h.session.connection_ids(), [5])

    def test_resolver_exception_refuses_that_connection_only(self):
        def broken(proto, address):
            raise RuntimeError("boom")

        h = Harness(resolver=broken)
        h.feed(connect(2))
        self.assertEqual([(m.conn_id, m.type) for m in h.take()], [(2, MessageType.ERROR)])
        self.assertFalse(h.session.closed)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_data_for_a_connection_refused_by_a_slow_resolver_is_dropped(self):
        pending: defer.Deferred = defer.Deferred()
        h = Harness(resolver=lambda proto, address: pending)
        h.feed(connect(2), msg(2, MessageType.DATA, b"x"))
        pending.callback(None)
        self.assertEqual([(m.conn_id, m.type) for m in h.take()], [(2, MessageType.ERROR)])
        self.assertEqual(h.session.connection_ids(), [])

    def test_connect_id_reused_replaces_the_old_connection(self):
        h = Harness()
        h.feed(connect(2), connect(2))
        h.clock.advance(0)
        self.assertEqual(len(h.api), 2)
        self.assertIsInstance(h.api[0].lost.value, ConnectionLost)
        self.assertIsNone(h.api[1].lost)


class CloseTests(SynchronousTestCase):
    def test_eof_closes_cleanly_and_is_not_echoed(self):
        h = Harness()
        h.feed(connect(2), msg(2, MessageType.ERROR, b"EOF"))
        self.assertIsNone(h.api[0].lost)  # never re-entrant
        h.clock.advance(0)
        self.assertIsInstance(h.api[0].lost.value, ConnectionDone)
        self.assertEqual(h.take(), [])
        self.assertEqual(h.session.connection_ids(), [])

    def test_other_error_loses_the_connection_with_its_text(self):
        h = Harness()
        h.feed(connect(2), msg(2, MessageType.ERROR, b"tunnel disconnect"))
        h.clock.advance(0)
        self.assertIsInstance(h.api[0].lost.value, ConnectionLost)
        self.assertIn("tunnel disconnect", str(h.api[0].lost.value))

    def test_error_for_unknown_id_is_ignored(self):
        h = Harness()
        h.feed(msg(9, MessageType.ERROR, b"EOF"), msg(9, MessageType.ERROR, b"whatever"))
        self.assertEqual(h.take(), [])
        self.assertEqual(h.session.stats.errors_for_unknown_ids, 2)

    def test_data_for_unknown_id_is_answered_with_error(self):
        h = Harness()
        h.feed(msg(7, MessageType.DATA, b"x"))
        sent = h.take()
        self.assertEqual([(m.conn_id, m.type) for m in sent], [(7, MessageType.ERROR)])
        self.assertEqual(sent[0].payload, b"connection not found c-test/7")

    def test_lose_connection_sends_eof_then_connection_done(self):
        h = Harness()
        h.feed(connect(2))
        p = h.api[0]
        p.transport.write(b"bye")
        p.transport.loseConnection()
        self.assertIsNone(p.lost)
        self.assertEqual([(m.type, m.payload) for m in h.take()],
                         [(MessageType.DATA, b"bye"), (MessageType.ERROR, b"EOF")])
        h.clock.advance(0)
        self.assertIsInstance(p.lost.value, ConnectionDone)
        self.assertEqual(p.lost_count, 1)
        self.assertEqual(h.session.connection_ids(), [])
        p.transport.write(b"late")  # ignored after close
        self.assertEqual(h.take(), [])

    def test_abort_connection_drops_queued_bytes_and_reports_aborted(self):
        h = Harness()
        h.feed(connect(2), msg(2, MessageType.PAUSE))
        p = h.api[0]
        p.transport.write(b"held back")
        p.transport.abortConnection()
        p.transport.abortConnection()
        sent = h.take()
        self.assertEqual([m.type for m in sent], [MessageType.ERROR])
        self.assertNotEqual(sent[0].payload, b"EOF")
        h.clock.advance(0)
        self.assertIsInstance(p.lost.value, ConnectionAborted)
        self.assertEqual(p.lost_count, 1)

    def test_peer_eof_waits_until_a_paused_protocol_has_read_everything(self):
        h = Harness()
        h.feed(connect(2))
        p = h.api[0]
        p.transport.pauseProducing()
        h.feed(msg(2, MessageType.DATA, b"last words"), msg(2, MessageType.ERROR, b"EOF"))
        h.clock.advance(0)
        self.assertIsNone(p.lost)
        p.transport.resumeProducing()
        self.assertEqual(p.received, [b"last words"])
        h.clock.advance(0)
        self.assertIsInstance(p.lost.value, ConnectionDone)

    def test_session_close_loses_every_connection(self):
        h = Harness()
        h.feed(connect(2), connect(3), connect(4, "tcp/127.0.0.1:7"))
        h.session.close("websocket closed")
        h.clock.advance(0)
        everyone = h.api + h.factories[("tcp", "127.0.0.1:7")].built
        self.assertEqual(len(everyone), 3)
        for p in everyone:
            self.assertIsInstance(p.lost.value, ConnectionLost)
            self.assertEqual(p.lost_count, 1)
        self.assertEqual(h.take(), [])  # the WebSocket is gone: nothing to say
        h.feed(connect(5))  # ignored after close
        self.assertEqual(h.session.connection_ids(), [])

    def test_deliberate_close_tells_the_peer(self):
        h = Harness()
        h.feed(connect(2), connect(3))
        h.session.close(notify_peer=True)
        sent = [(m.conn_id, m.type, m.payload) for m in h.take()]
        bye = (MessageType.ERROR, b"tunnel disconnect")
        self.assertEqual(sent, [(2, *bye), (3, *bye)])

    def test_protocol_exception_aborts_only_that_connection(self):
        class Broken(Recorder):
            def dataReceived(self, data):
                raise ValueError("bug")

        h = Harness()
        h.factories[("tcp", "10.43.0.2:443")] = RecorderFactory(Broken)
        h.feed(connect(2), connect(3, "tcp/10.43.0.2:443"), msg(3, MessageType.DATA, b"x"),
               msg(2, MessageType.DATA, b"fine"))
        h.clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(h.api[0].received, [b"fine"])
        self.assertEqual(h.session.connection_ids(), [2])
        self.assertIsInstance(h.factories[("tcp", "10.43.0.2:443")].built[0].lost.value, ConnectionAborted)


class GarbageTests(SynchronousTestCase):
    def test_garbage_is_dropped_and_the_next_message_served(self):
        h = Harness()
        h.feed(connect(2), b"", b"\xff" * 11, bytes.fromhex("020402"), msg(2, MessageType.DATA, b"ok"))
        self.assertEqual(h.session.stats.bad_messages, 3)
        self.assertEqual(h.api[0].received, [b"ok"])
        self.assertFalse(h.session.closed)

    def test_garbage_logging_is_rate_limited(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        h = Harness()
        for _ in range(50):
            h.feed(b"")
        h.clock.advance(10)
        h.feed(b"")
        warnings = [e for e in events if "malformed" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 2)
        self.assertEqual(warnings[1]["count"], 50)

    def test_unknown_types_and_peer_messages_are_ignored(self):
        h = Harness()
        h.feed(msg(0, 99, b"future"), msg(0, MessageType.ADD_CLIENT, b"a/1"),
               msg(0, MessageType.REMOVE_CLIENT, b"a/1"), connect(2))
        self.assertEqual(h.take(), [])
        self.assertEqual(h.session.connection_ids(), [2])


class BackpressureTests(SynchronousTestCase):
    def test_pause_stops_our_writes_until_resume(self):
        h = Harness()
        h.feed(connect(2))
        p = h.api[0]
        producer = Producer()
        p.transport.registerProducer(producer, True)
        h.feed(msg(2, MessageType.PAUSE))
        self.assertEqual(producer.calls, ["pause"])
        p.transport.write(b"a")
        p.transport.write(b"b")
        self.assertEqual(h.take(), [])
        h.feed(msg(2, MessageType.RESUME))
        self.assertEqual([m.payload for m in h.take()], [b"a", b"b"])
        self.assertEqual(producer.calls, ["pause", "resume"])

    def test_lose_connection_while_paused_flushes_before_eof(self):
        h = Harness()
        h.feed(connect(2), msg(2, MessageType.PAUSE))
        p = h.api[0]
        p.transport.write(b"tail")
        p.transport.loseConnection()
        self.assertEqual(h.take(), [])
        h.feed(msg(2, MessageType.RESUME))
        self.assertEqual([(m.type, m.payload) for m in h.take()],
                         [(MessageType.DATA, b"tail"), (MessageType.ERROR, b"EOF")])
        h.clock.advance(0)
        self.assertIsInstance(p.lost.value, ConnectionDone)

    def test_we_pause_above_2_mib_and_resume_below_256_kib(self):
        h = Harness()
        h.feed(connect(2))
        p = h.api[0]
        p.transport.pauseProducing()
        chunk = b"x" * MAX_DATA
        n = MAX_BUFFER // MAX_DATA
        for _ in range(n):
            h.feed(msg(2, MessageType.DATA, chunk))
        self.assertEqual(h.take(), [])  # exactly 2 MiB waiting: not more than
        h.feed(msg(2, MessageType.DATA, b"!"))
        self.assertEqual([(m.conn_id, m.type) for m in h.take()], [(2, MessageType.PAUSE)])
        h.feed(msg(2, MessageType.DATA, b"?"))
        self.assertEqual(h.take(), [])  # paused once only

        seen_resume_at = []
        original = p.dataReceived

        def reading(data):
            original(data)
            if any(m.type == MessageType.RESUME for m in h.sent) and not seen_resume_at:
                seen_resume_at.append(sum(map(len, p.received)))

        p.dataReceived = reading
        p.transport.resumeProducing()
        self.assertEqual(p.text, chunk * n + b"!?")
        self.assertEqual([m.type for m in h.take()], [MessageType.RESUME])
        total = len(chunk) * n + 2
        self.assertGreater(total - seen_resume_at[0], 0)
        self.assertLess(total - seen_resume_at[0] - len(chunk), RESUME_BELOW)
        self.assertEqual((h.session.stats.pauses_sent, h.session.stats.resumes_sent), (1, 1))

    def test_big_writes_are_split(self):
        h = Harness()
        h.feed(connect(2))
        h.api[0].transport.write(b"y" * (MAX_DATA * 2 + 1))
        self.assertEqual([len(m.payload) for m in h.take()], [MAX_DATA, MAX_DATA, 1])

    def test_tunnel_write_pause_pauses_every_producer(self):
        h = Harness()
        h.feed(connect(2), connect(3))
        producers = []
        for p in h.api:
            producers.append(Producer())
            p.transport.registerProducer(producers[-1], True)
        h.session.pause_writing()
        h.session.pause_writing()  # idempotent: FileDescriptor repeats it on every write
        h.feed(connect(4))
        late = Producer()
        h.api[2].transport.registerProducer(late, True)
        h.session.resume_writing()
        self.assertEqual([pr.calls for pr in producers], [["pause", "resume"]] * 2)
        self.assertEqual(late.calls, ["pause", "resume"])

    def test_pull_producer_is_pulled_until_unregistered(self):
        h = Harness()
        h.feed(connect(2))
        t = h.api[0].transport
        chunks = [b"1", b"2", b"3"]

        class Pull:
            def resumeProducing(self):
                if chunks:
                    t.write(chunks.pop(0))
                else:
                    t.unregisterProducer()

            def stopProducing(self):
                pass

        t.registerProducer(Pull(), False)
        for _ in range(10):
            h.clock.advance(0)
        self.assertEqual([m.payload for m in h.take()], [b"1", b"2", b"3"])

    def test_second_producer_is_refused(self):
        h = Harness()
        h.feed(connect(2))
        t = h.api[0].transport
        t.registerProducer(Producer(), True)
        self.assertRaises(RuntimeError, t.registerProducer, Producer(), True)


class ClientTimerTests(SynchronousTestCase):
    def test_ping_every_5_seconds(self):
        h = Harness()
        h.session.start()
        h.clock.advance(4.9)
        self.assertEqual(h.pings, 0)
        for _ in range(3):
            h.clock.advance(5)
            h.session.keepalive_received()
        self.assertEqual(h.pings, 3)

    def test_sync_connections_every_60_seconds_sorted(self):
        h = Harness()
        h.session.start()
        h.feed(connect(9), connect(2), connect(5))
        for _ in range(12):
            h.clock.advance(5)
            h.session.keepalive_received()
        syncs = [m for m in h.take() if m.type == MessageType.SYNC_CONNECTIONS]
        self.assertEqual(len(syncs), 1)
        self.assertEqual(syncs[0].conn_id, 0)
        self.assertEqual(frames.decode_connection_ids(syncs[0].payload), [2, 5, 9])

    def test_no_pong_for_60_seconds_ends_the_session(self):
        h = Harness()
        h.session.start()
        h.feed(connect(2))
        h.clock.advance(59)
        self.assertEqual(h.disconnects, [])
        h.clock.advance(1)
        self.assertEqual(h.disconnects, ["no pong for 60 s"])
        self.assertTrue(h.session.closed)
        h.clock.advance(0)
        self.assertIsInstance(h.api[0].lost.value, ConnectionLost)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_client_does_not_dial(self):
        h = Harness()
        self.assertRaises(RuntimeError, h.session.dial, "tcp", "x:1", RecorderFactory())


class ServerTests(SynchronousTestCase):
    def test_dial_assigns_ids_from_2_and_sends_connect_first(self):
        h = Harness(client=False)

        class Hello(Recorder):
            def connectionMade(self):
                self.transport.write(b"hello")

        first = h.session.dial("tcp", "10.43.0.1:443", RecorderFactory(Hello))
        second = h.session.dial("tcp", "10.43.0.1:443", RecorderFactory())
        sent = h.take()
        self.assertEqual([(m.conn_id, m.type) for m in sent],
                         [(2, MessageType.CONNECT), (2, MessageType.DATA), (3, MessageType.CONNECT)])
        self.assertEqual(sent[0].payload, b"tcp/10.43.0.1:443")
        self.assertEqual(first.transport.getPeer().host, "10.43.0.1")
        h.feed(msg(3, MessageType.DATA, b"answer"))
        self.assertEqual(second.received, [b"answer"])

    def test_refusal_arrives_as_connection_lost(self):
        h = Harness(client=False)
        p = h.session.dial("tcp", "10.43.0.9:443", RecorderFactory())
        h.feed(msg(2, MessageType.ERROR, b"dial tcp 10.43.0.9:443: connection refused"))
        h.clock.advance(0)
        self.assertIn("connection refused", str(p.lost.value))

    def test_connect_from_the_client_is_refused_alone(self):
        h = Harness(client=False, resolver=None)
        h.feed(connect(2))
        sent = h.take()
        self.assertEqual([(m.conn_id, m.type, m.payload) for m in sent],
                         [(2, MessageType.ERROR, b"connect not allowed")])
        self.assertFalse(h.session.closed)

    def test_sync_drops_missing_connections_silently(self):
        h = Harness(client=False)
        ps = [h.session.dial("tcp", "10.43.0.1:443", RecorderFactory()) for _ in range(4)]  # ids 2..5
        h.take()
        h.clock.advance(10)
        fresh = h.session.dial("tcp", "10.43.0.1:443", RecorderFactory())  # id 6, inside the grace
        h.take()
        h.feed(msg(0, MessageType.SYNC_CONNECTIONS, frames.encode_connection_ids([3, 5])))
        h.clock.advance(0)
        self.assertEqual(h.take(), [])  # silently: no ERROR goes out
        self.assertEqual(h.session.connection_ids(), [3, 5, 6])
        self.assertIsInstance(ps[0].lost.value, ConnectionLost)
        self.assertIsInstance(ps[2].lost.value, ConnectionLost)
        self.assertIsNone(ps[1].lost)
        self.assertIsNone(fresh.lost)
        self.assertEqual(h.session.stats.synced_away, 2)

    def test_malformed_sync_is_dropped_and_counted(self):
        h = Harness(client=False)
        h.session.dial("tcp", "10.43.0.1:443", RecorderFactory())
        h.clock.advance(10)
        h.feed(msg(0, MessageType.SYNC_CONNECTIONS, b"\x01\x02\x03"))
        self.assertEqual(h.session.stats.bad_messages, 1)
        self.assertEqual(h.session.connection_ids(), [2])

    def test_silent_for_60_seconds_ends_the_session(self):
        h = Harness(client=False)
        h.session.start()
        p = h.session.dial("tcp", "10.43.0.1:443", RecorderFactory())
        for _ in range(20):
            h.clock.advance(5)
            h.session.keepalive_received()  # a ping
        self.assertFalse(h.session.closed)
        self.assertEqual(h.pings, 0)  # the server never pings
        h.clock.advance(60)
        self.assertEqual(h.disconnects, ["no ping for 60 s"])
        h.clock.advance(0)
        self.assertIsInstance(p.lost.value, ConnectionLost)
        self.assertRaises(SessionClosed, h.session.dial, "tcp", "10.43.0.1:443", RecorderFactory())


class TransportShapeTests(SynchronousTestCase):
    def test_transport_has_what_tls_and_http_channel_use(self):
        h = Harness()
        h.feed(connect(2, "tcp/[fd00::1]:6443"))
        h.factories[("tcp", "[fd00::1]:6443")] = RecorderFactory()
        h.feed(connect(3, "tcp/[fd00::1]:6443"))
        t = h.factories[("tcp", "[fd00::1]:6443")].built[0].transport
        self.assertIsInstance(t, VirtualTransport)
        self.assertTrue(ITCPTransport.providedBy(t))
        self.assertTrue(IPushProducer.providedBy(t))
        self.assertEqual((t.getHost().type, t.getHost().host, t.getHost().port), ("TCP", "fd00::1", 6443))
        t.setTcpNoDelay(True)
        t.setTcpKeepAlive(True)
        self.assertTrue(t.getTcpNoDelay())
        t.loseWriteConnection()
        self.assertTrue(t.connected)


class FuzzTests(SynchronousTestCase):
    """Whatever the peer sends, the session neither raises nor loses track of its connections."""

    def test_random_message_sequences(self):
        from hypothesis import given, settings
        from hypothesis import strategies as st

        kinds = st.sampled_from([t.value for t in MessageType] + [0, 9, -1])
        one = st.one_of(
            st.binary(max_size=24),
            st.builds(lambda c, t, p: msg(c, t, p), st.integers(-3, 6), kinds,
                      st.sampled_from([b"", b"EOF", b"tcp/10.43.0.1:443", b"tcp/127.0.0.1:7", b"x" * 20,
                                       b"\x02\x00\x00\x00\x00\x00\x00\x00", b"junk"])),
        )

        @settings(max_examples=150, deadline=None)
        @given(st.lists(one, max_size=40), st.booleans())
        def run(messages, client):
            h = Harness(client=client)
            for m in messages:
                h.session.message_received(m)
                h.clock.advance(0)
            for conn_id, transport in h.session.connections.items():
                self.assertEqual(transport.conn_id, conn_id)
                self.assertTrue(transport.connected)
            h.session.close("end")
            h.clock.advance(0)
            for factory in h.factories.values():
                for p in factory.built:
                    self.assertEqual(p.lost_count, 1 if p.made else 0)

        run()
