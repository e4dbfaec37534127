"""Reproducible environment audits: what is in a flavor, that it matches its lock, and what changed.

One module a concern: `lock` (pixi.lock against pixi.toml, exports, generated files),
`prefix` (an installed environment against the lock, file by file), `readers` and `diff`
(any lock format pixi or the exports write, compared), `sbom` (CycloneDX), `cuda` (needs and
drivers), `licenses` (the inventory), `reporting` (tables, markdown, JSON).
"""
