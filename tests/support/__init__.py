"""Helpers the tests share: a local conda channel built from tiny packages, and workspaces on it."""
