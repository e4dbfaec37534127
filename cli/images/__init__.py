"""Images: flavor metadata, the files generated from it, and building the common and flavor images.

One module a concern: `metadata` (the schema of flavors/<name>/metadata.yml), `labels`
(io.simcore.* and runtime labels), `runscript` and `compose` (generated files),
`generated` (writing and checking them), `naming` (image names and Dockerfiles),
`provenance` (org.opencontainers.image.* and input labels), `plan` (engine commands),
`execute` (running them), `freshness` (what must be up to date before a build),
`versions` (bumping a flavor's version).
"""
