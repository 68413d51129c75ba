"""Per-image digests: which images a run saw, stored compactly, so leaks can be checked later.

A generator that trained on a classifier's test images would carry them into the synthetic set
and inflate the classifier's score. Runs record 64-bit digests of the images they trained on;
comparing digests needs neither the images nor the split that produced them.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["held_out_seen", "image_digests", "split_record"]


def image_digests(images: np.ndarray) -> np.ndarray:
    """uint64 (N,): a BLAKE2b digest of each image's bytes and shape."""
    images = np.ascontiguousarray(images)
    shape = repr(images.shape[1:]).encode()
    out = np.empty(len(images), dtype=np.uint64)
    for i, image in enumerate(images):
        digest = hashlib.blake2b(image.tobytes(), digest_size=8, person=b"genmix-img")
        digest.update(shape)
        out[i] = int.from_bytes(digest.digest(), "little")
    return out


def split_record(dataset, spec: str, split_seed: int) -> dict:
    """What a run folder records of its data: source, split seed, per-split class counts and
    one digest per split (equal digests = the same images in the same order)."""
    record = {"spec": str(spec), "split_seed": int(split_seed), "class_names": list(dataset.class_names),
              "counts": {}, "digest": {}}
    for name, split in dataset.splits.items():
        record["counts"][name] = [int(n) for n in np.bincount(split.labels, minlength=dataset.num_classes)]
        h = hashlib.blake2b(image_digests(split.images).tobytes(), digest_size=8)
        h.update(split.labels.astype(np.int64).tobytes())
        record["digest"][name] = h.hexdigest()
    return record


def held_out_seen(seen_digests, dataset) -> int:
    """How many of `dataset`'s val/test images are among `seen_digests` (the images a generator
    trained on). Images the data holds in train as well as in val/test are the data's own
    overlap, not the generator's doing, and are not counted."""
    seen = set(np.asarray(seen_digests).tolist())
    held_out = set(image_digests(dataset.splits["val"].images).tolist()) | \
        set(image_digests(dataset.splits["test"].images).tolist())
    return len((seen & held_out) - set(image_digests(dataset.splits["train"].images).tolist()))
