"""The remotedialer tunnel protocol (Rancher's virtual TCP connections over one WebSocket), both ends.

This package knows nothing of Kubernetes or Rancher: it carries bytes for connection ids and asks a
resolver what to connect a CONNECT to.  Modules, lowest first: `frames` (bytes <-> messages),
`transport` (a Twisted transport per connection id), `session` (the connection table and protocol
rules), `websocket` (the client end on autobahn), `server` (the server end on autobahn + Twisted Web).
"""
