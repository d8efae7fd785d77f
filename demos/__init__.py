"""Small runnable programs built on the reactor, written to be read."""
