"""TSTR of the 100% generator on the experiment's own one-hot synthetic set (2,354 images,
1,177 per class), small CNN 20 epochs, seed 0, TRTR = the experiment's none/seed0 run."""
import json, numpy as np, torch
torch.set_num_threads(1)
from genmix.data import load_dataset
from genmix.evaluation.generator import tstr
ds = load_dataset("../shared/data/pneumoniamnist.npz", seed=0)
d = np.load("runs/p100/synthetic/onehot.npz")
r = tstr(ds, d["train_images"], d["train_labels"].reshape(-1), model="small_cnn", epochs=20, seed=0,
         real_metrics="runs/p100/runs/none/seed0", classifier_options=dict(batch=64, lr=1e-3, split_seed=0))
json.dump(r, open("/work/meas/quick_tstr.json", "w"), indent=2, default=str)
print({k: r[k] for k in ("macro_f1", "real_macro_f1", "ratio", "auc", "real_auc", "n_synthetic")})
print(r["per_class"])
