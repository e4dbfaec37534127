"""The daemonless OCI engine: flavor images assembled from pixi.lock, bit for bit reproducible.

One module a concern: `tarball` (deterministic tar layers, zstd or gzip, files checked as
they stream), `base` (the base image), `common` (the common layer), `environment` (the
flavor's environment staged from the lock), `layer_plan` (which packages share a layer),
`environment_layers` (the staged environment packed by the plan), `service` (the service
layer and labels), `layer_cache` (layers reused by what they are made of), `layout` (blobs,
config, manifest, index and the archive), `build` (`build_oci_image`).
"""

from cli.oci.build import LayerInfo, OciBuildResult, build_oci_image, resolve_epoch
from cli.oci.tarball import Compression

__all__ = ["Compression", "LayerInfo", "OciBuildResult", "build_oci_image", "resolve_epoch"]
