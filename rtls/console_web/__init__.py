"""The console page and its assets, served as is by rtls.service.console (no build step)."""
