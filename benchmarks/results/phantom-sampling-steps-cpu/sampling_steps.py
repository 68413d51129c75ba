"""Heun sampling steps of the phantom diffusion generator the CPU demo trains: 18 (the preset's)
against 10 and 8. The generator is the `cpu` preset with x-flips, trained by length to 4.3 kimg
(what the demo's 3-minute budget reaches on an idle 2-core machine; its best validation-KID
snapshot, used here, is at 4 kimg). 150 images per step count (50 per class, seed 1) are scored by
TF-Inception FID and precision/recall (k = 3) against 150 real training images, and by the
macro-F1 with which a small CNN trained on the real training images (seed 0, 20 epochs, batch 64)
recovers the class each image was asked for. No test split is involved.

    python benchmarks/results/phantom-sampling-steps-cpu/sampling_steps.py OUT_DIR
"""
import json
import sys
import time

import numpy as np

from genmix.data import load_dataset
from genmix.metrics import classification_metrics
from genmix.metrics.fid import fid_from_features, get_extractor
from genmix.metrics.precision_recall import precision_recall
from genmix.training.classifier import ClassifierConfig, load_classifier, predict, train_classifier
from genmix.training.generator import load_generator, sample_images, train_generator

out = sys.argv[1]
ds = load_dataset("phantom", seed=0)
train_classifier(ds, f"{out}/clf", ClassifierConfig(model="small_cnn", epochs=20, batch=64, patience=0, seed=0),
                 progress=False)
train_generator("phantom", f"{out}/gan", arch="diffusion", preset="cpu",
                overrides=dict(mirror=True, budget_min=600, kimg=4.3), progress=False, device="cpu")
clf, _ = load_classifier(f"{out}/clf")
G, cfg = load_generator(f"{out}/gan")  # the best validation-KID snapshot
feats = get_extractor("inception")
train = ds.splits["train"]
idx = np.random.default_rng(0).choice(len(train.labels), 150, replace=False)
real_f = feats(train.images[idx])
labels = np.repeat(np.arange(3), 50)
rows = {}
for steps in (18, 10, 8):
    cfg.sample_steps = steps
    t0 = time.time()
    imgs = sample_images(G, cfg, labels, seed=1, device="cpu", out_resolution=ds.resolution)
    seconds = time.time() - t0
    f = feats(imgs)
    pr = precision_recall(real_f, f, 3)
    m = classification_metrics(predict(clf, imgs), labels, list(ds.class_names))
    rows[steps] = dict(seconds=round(seconds, 1), fid=round(fid_from_features(real_f, f), 1),
                       precision=round(pr["precision"], 3), recall=round(pr["recall"], 3),
                       class_macro_f1=round(m["macro_f1"], 3),
                       class_sens=[round(r["sensitivity"], 3) for r in m["per_class"]])
    print(steps, rows[steps], flush=True)
with open(f"{out}/steps.json", "w") as fh:
    json.dump(rows, fh, indent=1)
