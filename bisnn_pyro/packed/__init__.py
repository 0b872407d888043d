"""The packed 1-bit engine: binary-weight spiking networks run with integer additions and bit
counts, one bit per synapse on disk, giving the float network's readouts bit for bit."""

from .file import Export, PackedFileError, PackedModel, export_packed, load_packed, save_packed
from .network import PackedLayer, PackedNetwork

__all__ = [
    "Export",
    "PackedFileError",
    "PackedLayer",
    "PackedModel",
    "PackedNetwork",
    "export_packed",
    "load_packed",
    "save_packed",
]
