"""Imbalance-aware mixing: Remix labels against hand-computed cases, class-balanced partner choice
(in the batch and from the synthetic pool), the strategy modifiers and their bad values."""

import pytest
import torch

from genmix.errors import UsageError
from genmix.mixing import Remix, SyntheticPool, make_mixer, parse_strategy
from genmix.mixing.base import balanced_index
from genmix.pipeline import make_config
from genmix.training.classifier import ClassifierConfig


def _onehot(classes, k=2):
    return torch.nn.functional.one_hot(torch.tensor(classes), k).float()


def test_remix_label_weight_matches_hand_computed_cases():
    remix = Remix((90, 10), kappa=3, tau=0.5)
    # a's class, b's class, lam (a's pixel share) -> the weight of a's label
    cases = [
        (0, 1, 0.3, 0.0),   # a is the majority (9x) and holds < tau: the minority label whole
        (0, 1, 0.7, 0.7),   # a holds >= tau: plain mixup weight
        (1, 0, 0.6, 1.0),   # b is the majority and holds 0.4 < tau: a's (minority) label
        (1, 0, 0.4, 0.4),   # b holds 0.6 >= tau: plain
        (0, 0, 0.2, 0.2),   # same class: plain
        (1, 1, 0.9, 0.9),
    ]
    a, b, lam, want = zip(*cases)
    w = remix.label_weight(torch.tensor(lam), _onehot(list(a)), _onehot(list(b)))
    assert torch.allclose(w, torch.tensor(want))
    y = remix.labels(torch.tensor(lam), _onehot(list(a)), _onehot(list(b)))
    assert torch.allclose(y[0], torch.tensor([0.0, 1.0])) and torch.allclose(y[1], torch.tensor([0.7, 0.3]))
    assert torch.allclose(y.sum(1), torch.ones(len(cases)))


def test_remix_leaves_labels_alone_below_kappa_and_reads_soft_labels_by_argmax():
    near = Remix((20, 10), kappa=3, tau=0.5)  # 2x is not imbalanced enough
    lam = torch.tensor([0.1, 0.9])
    assert torch.allclose(near.label_weight(lam, _onehot([0, 1]), _onehot([1, 0])), lam)
    soft_a = torch.tensor([[0.6, 0.4], [0.3, 0.7]])  # classes 0 and 1 by arg-max
    w = Remix((90, 10)).label_weight(torch.tensor([0.2, 0.8]), soft_a, _onehot([1, 0]))
    assert torch.allclose(w, torch.tensor([0.0, 1.0]))


def test_remix_from_labels_and_bad_values():
    assert Remix.from_labels([0, 0, 0, 2], 3).class_counts == (3, 0, 1)
    for bad in (dict(kappa=0.5), dict(tau=1.5), dict(tau=-0.1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Remix((5, 5), **bad)
    with pytest.raises(ValueError, match="class_counts"):
        Remix(())
    with pytest.raises(ValueError, match="y_a and y_b"):
        Remix((5, 5)).label_weight(torch.zeros(2), _onehot([0, 1], 3), _onehot([0, 1], 3))
    with pytest.raises(ValueError, match="class_counts has 2 classes"):
        make_mixer("mixup", 3, remix=Remix((5, 5)))
    with pytest.raises(TypeError, match="remix must be"):
        make_mixer("mixup", 2, remix=(5, 5))


def test_balanced_index_picks_every_class_equally_often():
    classes = torch.tensor([0] * 95 + [1] * 5)
    g = torch.Generator().manual_seed(0)
    picks = torch.cat([balanced_index(classes, g, 2) for _ in range(200)])
    share_rare = (classes[picks] == 1).float().mean().item()
    assert 0.47 < share_rare < 0.53          # a permutation would give 0.05
    again = balanced_index(classes, torch.Generator().manual_seed(0), 2)
    assert torch.equal(again, picks[:100])   # seeded


def test_mixup_balanced_partners_and_remix_labels():
    x = torch.randn(64, 1, 4, 4)
    y = torch.tensor([0] * 60 + [1] * 4)
    plain = make_mixer("mixup", 2, generator=torch.Generator().manual_seed(1))
    plain(x, y)
    assert sorted(plain.last_params["index"].tolist()) == list(range(64))  # a permutation, as before
    shares = []
    for seed in range(20):
        m = make_mixer("mixup", 2, balanced=True, generator=torch.Generator().manual_seed(seed))
        m(x, y)
        shares.append((y[m.last_params["index"]] == 1).float().mean().item())
    assert 0.4 < sum(shares) / len(shares) < 0.6

    remix = Remix.from_labels(y, 2)
    m = make_mixer("mixup", 2, balanced=True, remix=remix, generator=torch.Generator().manual_seed(3))
    _, y_mix = m(x, y)
    lam, index = m.last_params["lam"], m.last_params["index"]
    major_low = (y == 0) & (y[index] == 1) & (lam < 0.5)
    assert major_low.any()
    assert torch.allclose(y_mix[major_low], _onehot([1] * int(major_low.sum())))
    plain_rows = y == y[index]
    assert torch.allclose(y_mix[plain_rows], _onehot(y[plain_rows].tolist()))


def _pool(n0=90, n1=10):
    labels = torch.tensor([0] * n0 + [1] * n1)
    images = torch.randn(len(labels), 1, 4, 4)
    return SyntheticPool(images, _onehot(labels.tolist()))


def test_gemix_balanced_draws_the_pools_rare_class_as_often():
    pool = _pool()
    x, y = torch.randn(400, 1, 4, 4), torch.zeros(400, dtype=torch.int64)
    plain = make_mixer("gemix", 2, synthetic=pool, generator=torch.Generator().manual_seed(0))
    plain(x, y)
    balanced = make_mixer("gemix", 2, synthetic=pool, balanced=True, generator=torch.Generator().manual_seed(0))
    balanced(x, y)
    rare = lambda m: (pool.classes[m.last_params["index"]] == 1).float().mean().item()  # noqa: E731
    assert rare(plain) < 0.2 and 0.42 < rare(balanced) < 0.58


def test_genmix_remix_changes_nothing_for_same_class_partners_but_does_for_gemix():
    pool = _pool()
    x, y = torch.randn(200, 1, 4, 4), torch.zeros(200, dtype=torch.int64)
    remix = Remix((90, 10))
    a = make_mixer("genmix", 2, synthetic=pool, generator=torch.Generator().manual_seed(5))
    b = make_mixer("genmix", 2, synthetic=pool, remix=remix, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a(x, y)[1], b(x, y)[1])
    g = make_mixer("gemix", 2, synthetic=pool, remix=remix, balanced=True, generator=torch.Generator().manual_seed(5))
    _, y_mix = g(x, y)
    lam, index = g.last_params["lam"], g.last_params["index"]
    # a rare synthetic partner (class 1) with lam >= 0.5 of the pixels against a common real image
    # (holding under tau): the label is the minority's whole
    rare_owns = (pool.classes[index] == 1) & (lam > 0.5)
    assert rare_owns.any()
    assert torch.allclose(y_mix[rare_owns], _onehot([1] * int(rare_owns.sum())))


def test_strategy_modifiers_parse_and_refuse_bad_values():
    spec, mods = parse_strategy("gemix+balanced+remix")
    assert spec.name == "gemix" and mods == {"balanced": True, "remix": True}
    assert parse_strategy("mixup")[1] == {"balanced": False, "remix": False}
    for bad, match in (("cutmix+remix", "takes no modifiers"), ("mixup+smote", "unknown modifier"),
                       ("mixup+remix+remix", "repeated"), ("mixupp", "unknown mixing strategy")):
        with pytest.raises(ValueError, match=match):
            parse_strategy(bad)
    with pytest.raises(UsageError, match="takes no modifiers"):
        make_config("tiny", {}, dict(data="phantom", out="x", strategies=["none", "synth+balanced"]))
    cfg = make_config("tiny", {}, dict(data="phantom", out="x", strategies=["none", "mixup+remix"]))
    assert cfg.strategies == ["none", "mixup+remix"]


def test_classifier_config_refuses_rebalancing_where_it_does_not_apply():
    with pytest.raises(UsageError, match="apply to mixup, genmix, gemix"):
        ClassifierConfig(mix="cutmix", mix_balance=True).validate()
    with pytest.raises(UsageError, match="remix_kappa must be >= 1"):
        ClassifierConfig(mix="mixup", remix_kappa=0.5).validate()
    with pytest.raises(UsageError, match="remix_tau"):
        ClassifierConfig(mix="mixup", remix_kappa=3.0, remix_tau=2.0).validate()
    ClassifierConfig(mix="gemix", synthetic="s.npz", mix_balance=True, remix_kappa=3.0).validate()


def _imbalanced_npz(path):
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 80), ("val", 24), ("test", 24)):
        labels = (np.arange(n) % 8 == 0).astype(np.int64)  # class 1 is 1 in 8
        images = rng.normal(80, 20, (n, 12, 12))
        images[labels == 1, 3:9, 3:9] += 100
        arrays[f"{split}_images"] = images.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    np.savez(path, **arrays)
    return str(path)


def test_training_with_balanced_remix_mixup_and_the_cli_flags(tmp_path, capsys):
    from genmix.cli import main
    from genmix.training.classifier import ClassifierTrainer, load_classifier, train_classifier

    data = _imbalanced_npz(tmp_path / "imb.npz")
    cfg = ClassifierConfig(model="small_cnn", mix="mixup", mix_balance=True, remix_kappa=3.0, epochs=1, batch=16)
    summary = train_classifier(data, tmp_path / "run", cfg, progress=False)
    assert summary["epoch"] == 1
    _, saved = load_classifier(tmp_path / "run")
    assert saved.mix_balance and saved.remix_kappa == 3.0

    from genmix.data import load_dataset
    from genmix.training import distributed as gdist

    saved.data_spec = data
    trainer = ClassifierTrainer(saved, load_dataset(data), gdist.DistInfo())
    assert trainer.mixer.balanced and trainer.mixer.remix.class_counts == (70, 10)
    order, _ = trainer._epoch_order()
    assert 0.35 < float((trainer.y_train.argmax(1)[order] == 1).float().mean()) < 0.65  # balanced batches

    assert main(["train-classifier", "--data", data, "--out", str(tmp_path / "bad"), "--model", "small_cnn",
                 "--mix", "cutmix", "--mix-balance", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apply to mixup, genmix, gemix" in err[0]


def test_experiment_modifiers_reach_the_classifier_config_and_stay_out_of_old_settings(tmp_path):
    from genmix.data import load_dataset
    from genmix.pipeline import _plan

    data = _imbalanced_npz(tmp_path / "imb.npz")
    cfg = make_config("tiny", {}, dict(data=data, out=str(tmp_path / "exp"), fid=False,
                                       strategies=["none", "mixup", "mixup+balanced+remix"]))
    stages = {st.name: st.settings for st in _plan(cfg, load_dataset(data), tmp_path / "exp")}
    plain = next(v for k, v in stages.items() if k.startswith("mixup/"))
    modified = next(v for k, v in stages.items() if k.startswith("mixup+balanced+remix/"))
    assert "mix_balance" not in plain and "remix_kappa" not in plain  # runs made before the option stay valid
    assert modified["mix"] == "mixup" and modified["mix_balance"] is True and modified["remix_kappa"] == 3.0
