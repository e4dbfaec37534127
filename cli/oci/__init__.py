"""The daemonless OCI engine: flavor images assembled from pixi.lock, bit for bit reproducible."""
