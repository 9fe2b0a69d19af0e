"""Runners that reproduce each paper's tables from a config (``calibkit experiment NAME``)."""
