"""Offline tooling that turns models into bundles and measures them (needs the `export` extra for torch)."""

from model_export import _torchvision_ops

_torchvision_ops.install()  # open_clip's torchvision must import beside the CPU torch (see the module)
