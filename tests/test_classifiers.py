"""Classifiers: shapes at MedMNIST sizes, any channel count, gradients, and the soft-label loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from genmix.models.classifiers import CLASSIFIERS, Classifier, build_classifier, soft_cross_entropy

# The big networks run at 28 px only, to stay fast; the backward pass runs on one channel count
# (the channel count changes only the first convolution).
HEAVY = ("resnet50", "resnet101", "efficientnet_b0", "vgg16")
CASES = [(name, size, ch) for name in CLASSIFIERS for size in (28, 64) for ch in (1, 3)
         if not (name in HEAVY and size == 64)]


@pytest.mark.parametrize("name,size,channels", CASES)
def test_shapes_and_backward(name, size, channels):
    model = build_classifier(name, num_classes=3, in_channels=channels, image_size=size)
    assert isinstance(model, Classifier)
    x = torch.randn(2, channels, size, size)
    model.eval()
    with torch.no_grad():
        feats = model.features(x)
    assert feats.shape == (2, model.feature_dim)
    assert model.fc(feats).shape == (2, 3)
    if channels == 1 or name == "small_cnn":
        model.train()
        logits = model(x)
        assert logits.shape == (2, 3) and torch.isfinite(logits).all()
        logits.sum().backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        first = next(model.parameters())
        assert first.grad is not None and first.grad.abs().sum() > 0


def test_dropout_and_eval_are_deterministic():
    model = build_classifier("small_cnn", 4, 1, dropout=0.5).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_builder_errors():
    with pytest.raises(ValueError, match="resnet18.*small_cnn"):
        build_classifier("resnet9000", 3)
    with pytest.raises(ValueError, match="num_classes"):
        build_classifier("small_cnn", 0)
    with pytest.raises(TypeError, match="in_channels"):
        build_classifier("small_cnn", 3, 1.5)
    with pytest.raises(ValueError, match="dropout"):
        build_classifier("small_cnn", 3, dropout=1.0)
    model = build_classifier("small_cnn", 3, 1)
    with pytest.raises(ValueError, match="x must be a batch"):
        model(torch.randn(2, 3, 28, 28))


def test_soft_cross_entropy_matches_cross_entropy():
    logits = torch.randn(5, 4)
    target = torch.tensor([0, 3, 1, 1, 2])
    expected = F.cross_entropy(logits, target)
    torch.testing.assert_close(soft_cross_entropy(logits, target), expected)
    torch.testing.assert_close(soft_cross_entropy(logits, F.one_hot(target, 4).float()), expected)
    smoothed = F.cross_entropy(logits, target, label_smoothing=0.1)
    torch.testing.assert_close(soft_cross_entropy(logits, target, label_smoothing=0.1), smoothed)
    torch.testing.assert_close(soft_cross_entropy(logits, F.one_hot(target, 4).float(), label_smoothing=0.1), smoothed)


def test_soft_cross_entropy_hand_computed():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # softmax rows: (1/4, 3/4), (1/2, 1/2)
    target = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
    first = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    second = -math.log(0.5)
    loss = soft_cross_entropy(logits, target)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_soft_cross_entropy_errors():
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match="target"):
        soft_cross_entropy(logits, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="target"):
        soft_cross_entropy(logits, torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="logits"):
        soft_cross_entropy(torch.randn(4), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(TypeError, match="target"):
        soft_cross_entropy(logits, torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="label_smoothing"):
        soft_cross_entropy(logits, torch.zeros(4, dtype=torch.int64), label_smoothing=2.0)
