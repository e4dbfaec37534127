"""The lock engine, one module a step of the flow:

manifest (pixi.toml) → channels and virtual_packages → solve → locking (every environment and
platform into one lock) → lockfile (pixi.lock read and written) → freshness (is the lock in step
with the manifest?) → export (envs/<flavor>/ for the images) → install (a prefix from the lock).

The commands under cli/commands stay thin over these modules.
"""
