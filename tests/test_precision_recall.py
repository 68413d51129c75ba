"""Improved precision/recall (Kynkaenniemi et al. 2019) on sets with known answers."""

import numpy as np
import pytest
import torch

from genmix.metrics import knn_radii, precision_recall, precision_recall_per_class


def _brute_force(real, fake, k):
    """The definition, written out with a full distance matrix."""
    def radii(x):
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]

    def covered(points, centres, r):
        d = np.sqrt(((points[:, None] - centres[None]) ** 2).sum(-1))
        return (d <= r[None] + 1e-12).any(1).mean()

    return covered(fake, real, radii(real)), covered(real, fake, radii(fake))


def test_hand_computed_example():
    # Reals on a line at 0, 1, 2, 3, 10; k = 1: radii 1, 1, 1, 1, 7 (10's nearest is 3).
    real = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    assert knn_radii(real, k=1).tolist() == pytest.approx([1, 1, 1, 1, 7])
    # Fakes at 0.5, 5, 20, 21: radii 4.5, 4.5, 1, 1.
    # 0.5 is within 1 of 0; 5 is within 7 of 10; 20 and 21 are outside every real ball -> P = 2/4.
    # Reals covered by a fake ball: 0, 1, 2, 3 (within 4.5 of 0.5); 10 is 5 from 5 and 10 from 20,
    # outside both balls -> R = 4/5.
    fake = np.array([[0.5], [5.0], [20.0], [21.0]])
    out = precision_recall(real, fake, k=1)
    assert out == {"precision": 0.5, "recall": 0.8, "k": 1, "n_real": 5, "n_fake": 4}
    # Radius boundaries count as inside: a fake exactly at distance 1 from 3 (at 4).
    assert precision_recall(real, np.array([[4.0], [4.0], [-1.0]]), k=1)["precision"] == 1.0


def test_set_against_itself():
    x = np.random.default_rng(0).normal(size=(300, 64))
    assert precision_recall(x, x.copy()) == {"precision": 1.0, "recall": 1.0, "k": 3, "n_real": 300,
                                             "n_fake": 300}


def test_far_shifted_copy():
    x = np.random.default_rng(1).normal(size=(200, 32))
    out = precision_recall(x, x + 100.0)
    assert out["precision"] == 0.0 and out["recall"] == 0.0


def test_collapsed_generator_keeps_precision_and_loses_recall():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(400, 16))
    modes = real[:5]  # the generator reproduces five real images, with a little noise
    fake = np.repeat(modes, 80, axis=0) + 1e-3 * rng.normal(size=(400, 16))
    out = precision_recall(real, fake)
    assert out["precision"] == 1.0
    assert out["recall"] <= 5 / 400 + 1e-9  # only the five modes themselves are covered
    # A generator of fresh samples from the real distribution does well on both.
    good = precision_recall(real, rng.normal(size=(400, 16)))
    assert good["precision"] > 0.5 and good["recall"] > 0.5


def test_matches_the_definition_with_blocks_and_duplicates():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(150, 8))
    fake = np.concatenate([rng.normal(0.3, 1.2, size=(117, 8)), real[:3], real[:3]])  # duplicates
    p, r = _brute_force(real, fake, 3)
    for block in (8 * 150, 10_000, 2 ** 26):  # one row per block, a few rows, everything at once
        out = precision_recall(real, fake, block_bytes=block)
        assert out["precision"] == pytest.approx(p) and out["recall"] == pytest.approx(r)
    # float32 numpy and torch inputs give the same answer.
    torch_out = precision_recall(torch.from_numpy(real).float(), torch.from_numpy(fake).float())
    assert torch_out["precision"] == pytest.approx(p, abs=1 / len(fake))
    assert torch_out["recall"] == pytest.approx(r, abs=1 / len(real))


def test_per_class():
    rng = np.random.default_rng(4)
    real = np.concatenate([rng.normal(size=(60, 8)), rng.normal(size=(60, 8)) + 50])
    y_real = np.repeat([0, 1], 60)
    # Class 0 generated well; class 1 generated off its class (far away); class 2 too small.
    fake = np.concatenate([real[:60] + 1e-6, real[60:] + 1000, rng.normal(size=(2, 8))])
    y_fake = np.concatenate([np.zeros(60, int), np.ones(60, int), [2, 2]])
    rows = precision_recall_per_class(real, y_real, fake, y_fake, ["a", "b", "c"])
    assert [row["name"] for row in rows] == ["a", "b", "c"]
    assert rows[0]["precision"] == 1.0 and rows[0]["recall"] == 1.0
    assert rows[1]["precision"] == 0.0 and rows[1]["recall"] == 0.0
    assert rows[2]["precision"] is None and "skipped" in rows[2]["note"]
    assert (rows[2]["n_real"], rows[2]["n_fake"]) == (0, 2)
    assert (rows[0]["n_real"], rows[0]["n_fake"]) == (60, 60)


def test_bad_input():
    x = np.zeros((10, 4))
    with pytest.raises(ValueError, match="2-D"):
        precision_recall(np.zeros(10), x)
    with pytest.raises(ValueError, match="same dimension"):
        precision_recall(x, np.zeros((10, 5)))
    with pytest.raises(ValueError, match="at least k \\+ 1 = 4 rows"):
        precision_recall(x, np.zeros((3, 4)))
    with pytest.raises(TypeError, match="numeric"):
        precision_recall(x.astype(str), x)
    with pytest.raises(TypeError, match="numeric"):
        precision_recall(x.astype(bool), x)
    with pytest.raises(ValueError, match="finite"):
        precision_recall(np.full((10, 4), np.nan), x)
    with pytest.raises(ValueError, match="k must be >= 1"):
        precision_recall(x, x, k=0)
    with pytest.raises(TypeError, match="k must be an int"):
        precision_recall(x, x, k=2.5)
    with pytest.raises(ValueError, match="block_bytes"):
        precision_recall(x, x, block_bytes=0)
    with pytest.raises(ValueError, match="real_labels"):
        precision_recall_per_class(x, np.zeros(9, int), x, np.zeros(10, int), ["a", "b"])
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        precision_recall_per_class(x, np.zeros(10, int), x, np.full(10, 2), ["a", "b"])
    with pytest.raises(TypeError, match="integer"):
        precision_recall_per_class(x, np.zeros(10), x, np.zeros(10, int), ["a", "b"])
