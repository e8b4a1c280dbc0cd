"""Datasets: download, convert once to an array file, load onto a device, batch and augment.

- :data:`DATASETS` / :class:`DatasetSpec`: the registry (``cifar10``, ``cifar100``, ``mnist``,
  ``fashion_mnist``, ``kmnist``, ``svhn``, ``stl10``, ``digits``).
- :func:`download`, :func:`prepare`: archive -> ``resources/data/{dataset}.npz``.
- :func:`load_prepared` -> :class:`Prepared`: the arrays as tensors on a device.
- :class:`TrainLoader`, :func:`eval_batches`, :func:`holdout_split`, :func:`eval_subset`.
"""

from infoopt.data.download import download
from infoopt.data.errors import DataError
from infoopt.data.loader import TrainLoader, eval_batches
from infoopt.data.preparation import prepare
from infoopt.data.prepared import Prepared, load_prepared
from infoopt.data.registry import DATASETS, DatasetSpec, get_spec
from infoopt.data.splits import eval_subset, holdout_split

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetSpec",
    "Prepared",
    "TrainLoader",
    "download",
    "eval_batches",
    "eval_subset",
    "get_spec",
    "holdout_split",
    "load_prepared",
    "prepare",
]
