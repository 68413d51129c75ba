"""Application-level evaluations that combine several stages (above training and report, below
pipeline and cli).

`generator.evaluate_generator` judges a trained generator run by what it is for: FID/KID
against the real-vs-real floor, precision/recall, and TSTR over TRTR (a classifier trained on
synthetic images only, tested on real ones, against the same recipe trained on real images).
"""

from genmix.evaluation.generator import class_plan, evaluate_generator, soft_label_scores, tstr

__all__ = ["class_plan", "evaluate_generator", "soft_label_scores", "tstr"]
