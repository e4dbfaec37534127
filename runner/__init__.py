"""The in-container runner: runs one oSPARC job with the flavor's Python.

Standard library, plus `packaging` for reading a requirements.txt (locked in the
flavors' `runner` feature, imported only when needed): it runs inside the user's flavor
environment and imports nothing else from it (nor fights over packages with the user's
code). Packages the user asks for in a requirements.txt go into a cached, sealed overlay
built by the `uv` executable on top of the locked base, never into the base itself.
"""

__version__ = "0.1.0"
