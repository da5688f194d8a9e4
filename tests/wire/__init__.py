"""Wire tests: the real gateway process and the Go stand-in (or a scripted
upstream) on loopback ports, asserting what travels over the sockets."""
