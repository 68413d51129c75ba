"""One face for every trained generator run (StyleGAN2, DCGAN, diffusion): load it, draw images.

Synthesis, FID, generator evaluation and the pipeline only ever call `load_generator` and
`sample_images`, so a new generator family plugs in here and nowhere else.
"""

from __future__ import annotations

__all__ = ["load_generator", "sample_images"]


def load_generator(run_dir, device="cpu"):
    """(G, cfg) of a generator run's newest checkpoint, in eval mode."""
    from genmix.training.gan import load_generator as load_gan

    return load_gan(run_dir, device)


def sample_images(G, cfg, classes=None, *, soft_labels=None, seed=0, psi=1.0, batch=64, device="cpu",
                  out_resolution=None, latents=None):
    """uint8 NHWC images for class indices or soft-label rows, at the data's own size.

    The same call with the same seed returns the same images. `psi` is the GAN's truncation.
    """
    from genmix.training.gan import sample_images as sample_gan

    return sample_gan(G, cfg, classes, soft_labels=soft_labels, seed=seed, psi=psi, batch=batch,
                      device=device, out_resolution=out_resolution, latents=latents)
