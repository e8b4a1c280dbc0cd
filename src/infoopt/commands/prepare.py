"""``infoopt prepare``: download a dataset archive if needed, verify it, convert it once."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "download (if needed), verify and convert a dataset into its array file"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset", help="a dataset of infoopt.data.DATASETS, e.g. cifar10, mnist or digits"
    )
    parser.add_argument(
        "--raw-dir", type=Path, default=None, help="archive folder (default: resources/raw/DATASET)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="array file (default: resources/data/DATASET.npz)"
    )
    parser.add_argument(
        "--url",
        default=None,
        help="archive URL, or base URL of a set of several files (default: the official one)",
    )
    parser.add_argument("--md5", default=None, help="the archive's md5 (default: the official one)")
    parser.add_argument(
        "--download-only", action="store_true", help="only fetch and verify the archive"
    )
    parser.add_argument(
        "--image-folder",
        default=None,
        metavar="JSON",
        help="the dataset is an image folder with these settings (classes, image_size, "
        "channels, path or url and md5), as in the config's datasets section",
    )


def run(args: argparse.Namespace) -> int:
    import logging

    from infoopt.data import download, prepare
    from infoopt.data.arrays import is_array_file, read_arrays

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.image_folder is not None:
        import json

        from infoopt.data.registry import register_image_folders

        settings = json.loads(args.image_folder)
        register_image_folders({args.dataset: settings})
        logging.info("%s: classes in label order: %s", args.dataset, ", ".join(settings["classes"]))
    raw_dir = args.raw_dir or Path("resources/raw") / args.dataset
    out = args.out or Path("resources/data") / f"{args.dataset}.npz"
    if args.download_only:
        archive = download(args.dataset, raw_dir, url=args.url, md5=args.md5)
        print(f"{archive}: downloaded and verified")
        return 0
    existed = is_array_file(out)
    prepare(args.dataset, raw_dir, out, url=args.url, md5=args.md5)
    arrays = read_arrays(out)
    _, channels, height, width = arrays["x_train"].shape
    mean = ", ".join(f"{value:.4f}" for value in arrays["mean"])
    std = ", ".join(f"{value:.4f}" for value in arrays["std"])
    print(
        f"{out}: {'already prepared' if existed else 'written'}; {args.dataset}, "
        f"{len(arrays['y_train'])} train + {len(arrays['y_test'])} test images of "
        f"{channels}x{height}x{width}, {int(arrays['num_classes'])} classes, "
        f"mean ({mean}), std ({std})"
    )
    return 0
