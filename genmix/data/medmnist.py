"""Where MedMNIST files live and what their classes are called.

The MedMNIST npz files carry no class names, so the names of the common 2-D multi-class
subsets are kept here; reports then say "pneumonia" rather than "class_1".
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .dataset import DataError

_ORGAN = ["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
          "liver", "lung-left", "lung-right", "pancreas", "spleen"]

MEDMNIST_CLASS_NAMES = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal, benign"],
    "bloodmnist": ["basophil", "eosinophil", "erythroblast", "immature granulocytes",
                   "lymphocyte", "monocyte", "neutrophil", "platelet"],
    "dermamnist": ["actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma",
                   "melanocytic nevi", "vascular lesions"],
    "octmnist": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
    "pathmnist": ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                  "normal colon mucosa", "cancer-associated stroma",
                  "colorectal adenocarcinoma epithelium"],
    "organamnist": _ORGAN,
    "organcmnist": _ORGAN,
    "organsmnist": _ORGAN,
}

_FLAG = re.compile(r"^[A-Za-z0-9_\-]+$")


def known_class_names(stem: str):
    """Class names for a MedMNIST file stem such as "pneumoniamnist" or "pneumoniamnist_64", else None."""
    flag = re.sub(r"_\d+$", "", stem.lower())
    names = MEDMNIST_CLASS_NAMES.get(flag)
    return list(names) if names is not None else None


def medmnist_path(flag: str) -> Path:
    """The npz for `flag`: $MEDMNIST_ROOT/<flag>.npz first, then ~/.medmnist/<flag>.npz."""
    if not flag or not _FLAG.match(flag):
        raise DataError(f"medmnist flag must be a name like 'pneumoniamnist', got {flag!r}")
    places = []
    root = os.environ.get("MEDMNIST_ROOT")
    if root:
        places.append(Path(root).expanduser() / f"{flag}.npz")
    places.append(Path.home() / ".medmnist" / f"{flag}.npz")
    for place in places:
        if place.is_file():
            return place
    looked = " and ".join(str(p) for p in places)
    if not root:
        looked += " ($MEDMNIST_ROOT is not set)"
    raise DataError(f"medmnist:{flag}: no {flag}.npz found; looked in {looked}")
