"""OTLP/HTTP: decoding requests (protobuf or JSON) and mapping their traces, metrics and logs
onto the system's stores (docs/PROTOCOLS.md "OTLP/HTTP")."""
