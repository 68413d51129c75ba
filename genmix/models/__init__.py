"""Network modules of genmix built on the fused ops in `genmix.ops`.

`genmix.models.stylegan2` holds a class-conditional StyleGAN2 generator and discriminator whose
labels are float vectors, so mixed (soft) labels from `genmix.ops.mixing` can be fed directly.
`genmix.models.augment` holds the ADA augmentation pipe and the r_t heuristic that adapts its p.
`genmix.models.dcgan` holds a conditional DCGAN baseline with the same call signatures.
"""
