"""Maintainer CLI for the oSPARC ML runner services: lock, export, install, build, audit, run."""
