"""The classifier's batches: what a training step feeds the mixer and the model, pinned against
the recipe written out here from first principles.

A run's batches are defined by its seed: one CPU generator orders the data (a permutation, or a
class-balanced draw, then one flip coin per image, per epoch), batch i of an epoch is the slice
order[i*B:(i+1)*B], the images are the uint8 training images scaled to [-1, 1], flipped where
their coin says so (with hflip), and the mixer (its own generator, seeded seed * 1000 + 1) turns
that batch into the one the model sees. However the trainer stores its data (on the host, on
the device, as uint8 or float) and however it indexes it, these batches must not change.
"""

import numpy as np
import pytest
import torch

from genmix.data import load_dataset
from genmix.mixing import SyntheticPool, append_synthetic, class_balanced_sampler, make_mixer
from genmix.training import distributed as gdist
from genmix.training.classifier import ClassifierConfig, ClassifierTrainer, _load_synthetic

N_TRAIN, K, SIZE, BATCH = 44, 3, 12, 8


def _images(rng, labels):
    x = rng.normal(70, 30, (len(labels), SIZE, SIZE))
    x[:, :, : SIZE // 3] += 60 * labels[:, None, None]  # class-dependent, and not mirror-symmetric
    return x.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("batches")
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", N_TRAIN), ("val", 12), ("test", 12)):
        labels = np.array([0, 0, 0, 1, 2] * n)[:n]  # imbalanced: class-balanced draws differ from uniform
        arrays[f"{split}_images"] = _images(rng, labels)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    path = root / "data.npz"
    np.savez(path, **arrays)
    syn_labels = np.arange(30) % K
    soft = np.eye(K, dtype=np.float32)[syn_labels] * 0.7 + 0.1
    syn = root / "syn.npz"
    np.savez(syn, train_images=_images(rng, syn_labels), train_labels=syn_labels.reshape(-1, 1), soft_labels=soft)
    return str(path), str(syn)


class Recorder:
    """Stands in for the trainer's mixer: records what goes in and what comes out."""

    def __init__(self, mixer):
        self.mixer, self.inputs, self.outputs = mixer, [], []

    def __call__(self, x, y):
        self.inputs.append((x.detach().cpu().clone(), y.detach().cpu().clone()))
        out = self.mixer(x, y)
        self.outputs.append(tuple(t.detach().cpu().clone() for t in out))
        return out

    def __getattr__(self, name):
        return getattr(self.mixer, name)


def _trainer(data, **kw):
    spec, syn = data
    cfg = ClassifierConfig(model="small_cnn", epochs=3, batch=BATCH, seed=5, data_spec=spec, num_classes=K,
                           class_names=["a", "b", "c"], channels=1, resolution=[SIZE, SIZE], **kw)
    if cfg.mix in ("synth", "genmix", "gemix"):
        cfg.synthetic = syn
    cfg.validate()
    dataset = load_dataset(spec)
    trainer = ClassifierTrainer(cfg, dataset, gdist.DistInfo())
    recorder = trainer.mixer = Recorder(trainer.mixer)
    return trainer, recorder, cfg, dataset


def _expected(cfg, dataset, steps):
    """The batches of `steps` training steps, by the recipe in the module docstring."""
    train = dataset.splits["train"]
    images, soft = train.images, np.eye(K, dtype=np.float32)[train.labels]
    pool = None
    if cfg.mix == "synth":
        syn_images, syn_soft = _load_synthetic(cfg, dataset)
        images, soft = append_synthetic(train.images, train.labels, syn_images, syn_soft, ratio=cfg.synth_ratio,
                                        rng=cfg.seed)
    elif cfg.mix in ("genmix", "gemix"):
        pool = SyntheticPool.from_npz(cfg.synthetic, K, resolution=(SIZE, SIZE))
    images = images if images.ndim == 4 else images[..., None]  # NHWC
    x_all = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    y_all = torch.from_numpy(soft)
    n = len(x_all)
    per_epoch = n // cfg.batch
    order_rng = torch.Generator().manual_seed(cfg.seed)
    mixer = make_mixer(cfg.mix, K, alpha=cfg.alpha, synthetic=pool,
                       generator=torch.Generator().manual_seed(cfg.seed * 1000 + 1))
    batches = []
    for step in range(steps):
        i = step % per_epoch
        if i == 0:
            if cfg.class_balanced or cfg.mix_balance:
                order = torch.tensor(list(class_balanced_sampler(y_all.argmax(1), generator=order_rng)))
            else:
                order = torch.randperm(n, generator=order_rng)
            flips = torch.rand(n, generator=order_rng) < 0.5
        idx = order[i * cfg.batch:(i + 1) * cfg.batch]
        x = x_all[idx].float().div_(127.5).sub_(1.0)
        if cfg.hflip:
            x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(3), x)
        y = y_all[idx]
        batches.append(((x, y), mixer(x, y)))
    return batches


CASES = {
    "none-hflip": dict(mix="none", hflip=True),
    "mixup-hflip": dict(mix="mixup", hflip=True),
    "cutmix": dict(mix="cutmix"),
    "synth": dict(mix="synth", hflip=True),
    "genmix": dict(mix="genmix"),
    "gemix": dict(mix="gemix"),
    "balanced": dict(mix="mixup", class_balanced=True, hflip=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_batches_follow_the_seeded_recipe(data, case):
    trainer, recorder, cfg, dataset = _trainer(data, **CASES[case])
    steps = trainer.steps_per_epoch + 2  # into the second epoch: a new order and new flips
    for _ in range(steps):
        trainer.step()
        if trainer.period_done():
            trainer.state["epoch"] += 1  # what end_period does for the order; no validation needed here
            trainer._order = None
    expected = _expected(cfg, dataset, steps)
    assert len(recorder.inputs) == steps
    for step, ((x, y), (x_mix, y_mix)) in enumerate(expected):
        got_x, got_y = recorder.inputs[step]
        assert torch.equal(got_x, x), f"step {step}: the real images (order, flips, scaling) differ"
        assert torch.equal(got_y, y), f"step {step}: the labels differ"
        out_x, out_y = recorder.outputs[step]
        assert torch.equal(out_x, x_mix) and torch.equal(out_y, y_mix), f"step {step}: the mixed batch differs"


def test_flips_happen_and_change_images(data):
    """The recipe's hflip is not vacuous here: some images of a batch are mirrored."""
    trainer, recorder, cfg, dataset = _trainer(data, mix="none", hflip=True)
    trainer.step()
    plain = _expected(ClassifierConfig(**{**cfg.to_dict(), "hflip": False}), dataset, 1)[0][0][0]
    flipped = recorder.inputs[0][0]
    differs = (plain != flipped).flatten(1).any(1)
    assert 0 < int(differs.sum()) < BATCH
