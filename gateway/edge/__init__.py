"""The edge: what every client connection and request meets first — the HTTP
protocol held to limits and timeouts (protocol, headscan, cycle, limits,
connections, descriptors) and CORS."""
