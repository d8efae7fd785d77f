"""Benchmarks for the reactor, run side by side with asyncio (``python -m bench.micro``)."""
