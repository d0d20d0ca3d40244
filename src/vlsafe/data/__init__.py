"""The offline dataset: episodes on disk (HDF5, compressed, one file each), sampling, Minari I/O."""

from vlsafe.data.episode import SIGNALS, Episode
from vlsafe.data.store import DatasetError, EpisodeStore

__all__ = ["Episode", "SIGNALS", "EpisodeStore", "DatasetError"]
