"""Example sites shipped with rtls (``example.toml``)."""
