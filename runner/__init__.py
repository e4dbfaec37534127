"""The in-container runner: runs one oSPARC job with the flavor's Python.

Standard library only: it runs inside the user's flavor environment and must never
import anything from it (nor fight over packages with the user's code). Packages the
user asks for in a requirements.txt go into a cached overlay built by the `uv`
executable on top of the locked base, never into the base itself.
"""

__version__ = "0.1.0"
