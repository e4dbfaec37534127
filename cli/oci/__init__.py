"""The daemonless OCI engine: flavor images assembled from pixi.lock, bit for bit reproducible.

One module a concern: `tarball` (deterministic tar layers), `base` (the base image),
`common`, `environment` and `service` (the three layers above it), `layout` (blobs,
config, manifest, index and the archive), `build` (`build_oci_image`).
"""

from cli.oci.build import LayerInfo, OciBuildResult, build_oci_image, resolve_epoch
from cli.oci.tarball import Compression

__all__ = ["Compression", "LayerInfo", "OciBuildResult", "build_oci_image", "resolve_epoch"]
