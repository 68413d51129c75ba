"""Training loops and the files they leave behind.

`gan` trains the conditional StyleGAN2-ADA / DCGAN, `synthesize` turns a GAN run into synthetic
training sets, `gan_fid` scores a run, `classifier` trains a classifier with a mixing strategy,
`checkpoint` writes safetensors + JSON atomically, `distributed` is the torchrun plumbing.
"""
