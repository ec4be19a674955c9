"""rtls: real-time location and alarm engine for hospitals (infant protection, lone workers)."""

__version__ = "0.1.0"
