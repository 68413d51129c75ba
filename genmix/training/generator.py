"""One face for every trained generator run (StyleGAN2, DCGAN, diffusion): load it, draw images.

Synthesis, FID, generator evaluation and the pipeline only ever call `load_generator` and
`sample_images`, so a new generator family plugs in here and nowhere else.

This face imports the families (genmix.training.gan, genmix.training.diffusion); what the
families share (`fit_generator`, `GeneratorSnapshots`, `SnapshotKID`) lives below them in
genmix.training.generator_base and is re-exported here, so nothing imports back up.
"""

from __future__ import annotations

import json
from pathlib import Path

from genmix.training.generator_base import GeneratorSnapshots, SnapshotKID, fit_generator

__all__ = ["ARCHS", "DEFAULT_ARCH", "GeneratorSnapshots", "SnapshotKID", "fit_generator", "load_generator", "sample_images",
           "train_generator"]

ARCHS = ("stylegan2", "dcgan", "diffusion")
# A new generator run's family when none is asked for: the soft-label diffusion model, which beat
# StyleGAN2-ADA on the distances to the training images at the same CPU budget (FID 61.2 vs 67.8,
# recall 0.25 vs 0.03 on PneumoniaMNIST; see genmix.pipeline.ExperimentConfig.gan_arch).
DEFAULT_ARCH = "diffusion"
# Settings only the GANs have; a diffusion run asked for them is a usage mistake.
_GAN_ONLY = ("aug", "r1_gamma", "pl_weight", "g_lr", "d_lr")


def _arch(run_dir) -> str:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a GAN run: {path} is missing")
    return json.loads(path.read_text()).get("arch", "stylegan2")


def train_generator(data, out_dir, *, arch=None, preset=None, overrides=None, resume=False, **kw):
    """Train (or resume) a generator run of any family; the family of a resumed run is its own.

    `preset` None means the family's default for a new run and none for a resume. Keywords as
    for `genmix.training.gan.train_gan`. The family of a new run defaults to DEFAULT_ARCH."""
    from genmix.errors import UsageError

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    given_arch = arch is not None
    if resume and (Path(out_dir) / "config.json").is_file():
        saved = _arch(out_dir)
        if arch is not None and arch != saved:
            raise UsageError(f"--resume: {out_dir} is a {saved} run, not {arch}")
        arch = saved
    arch = arch or DEFAULT_ARCH
    if arch not in ARCHS:
        raise UsageError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    if preset is None and not resume:
        preset = "cpu"
    if arch == "diffusion":
        from genmix.training.diffusion import train_diffusion

        wrong = [k for k in _GAN_ONLY if k in overrides and k not in ("g_lr", "d_lr")]
        if wrong:
            raise UsageError(f"{', '.join(wrong)}: GAN settings, not used by a diffusion model"
                             + ("" if given_arch else " (the default family; ask for --arch stylegan2 or dcgan)"))
        lr = overrides.pop("g_lr", None)
        overrides.pop("d_lr", None)
        if lr is not None:
            overrides["lr"] = lr
        overrides.pop("arch", None)
        return train_diffusion(data, out_dir, preset=preset, overrides=overrides, resume=resume, **kw)
    from genmix.training.gan import DCGAN_OPTIMIZER, train_gan

    if arch == "dcgan" and not (resume and (Path(out_dir) / "config.json").is_file()):
        overrides = {**DCGAN_OPTIMIZER, **overrides}
    return train_gan(data, out_dir, preset=preset, overrides=dict(overrides, arch=arch), resume=resume, **kw)


def load_generator(run_dir, device="cpu", *, which="best"):
    """(G, cfg) of a generator run, in eval mode: the snapshot with the lowest validation KID
    when the run kept one (`which="best"`), else the newest checkpoint ("latest")."""
    if _arch(run_dir) == "diffusion":
        from genmix.training.diffusion import load_denoiser

        return load_denoiser(run_dir, device, which=which)
    from genmix.training.gan import load_generator as load_gan

    return load_gan(run_dir, device, which=which)


def sample_images(G, cfg, classes=None, *, soft_labels=None, seed=0, psi=1.0, batch=64, device="cpu",
                  out_resolution=None, latents=None):
    """uint8 NHWC images for class indices or soft-label rows, at the data's own size.

    The same call with the same seed returns the same images. `psi` is the GAN's truncation
    (ignored by a diffusion model, which samples with its run's guidance and step count).
    """
    if getattr(cfg, "arch", "") == "diffusion":
        from genmix.training.diffusion import sample_diffusion

        return sample_diffusion(G, cfg, classes, soft_labels=soft_labels, seed=seed, batch=batch, device=device,
                                out_resolution=out_resolution)
    from genmix.training.gan import sample_images as sample_gan

    return sample_gan(G, cfg, classes, soft_labels=soft_labels, seed=seed, psi=psi, batch=batch,
                      device=device, out_resolution=out_resolution, latents=latents)
