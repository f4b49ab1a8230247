"""The endpoint's wire protocol, sans-I/O: message framing, pre-TLS negotiation and the per-connection
session state machine. Bytes in, events and actions out; no sockets, loops or timers here."""
