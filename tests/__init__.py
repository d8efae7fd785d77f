"""The reactor test suite; layout mirrors the layers (see docs/ARCHITECTURE.md)."""
