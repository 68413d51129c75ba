"""GAN training: backend agreement of a full G/D step, resume reproducibility, non-finite stop,
two-process (gloo) replicas, and a conditioning sanity check with soft labels."""

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from backends import cpu_kernel_impls
from genmix.training.checkpoint import load_checkpoint, save_checkpoint
from genmix.training.gan import GANConfig, GANTrainer, NonFiniteLossError

TINY = dict(resolution=16, z_dim=16, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32,
            batch=4, kimg=1, r1_interval=2, snapshot_kimg=0.008, ema_kimg=0.01)


def toy_data(n=32, channels=1, resolution=16, seed=0):
    """Two classes a classifier tells apart by brightness: dark (0) and bright (1)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    level = torch.where(labels == 0, -0.6, 0.6).view(n, 1, 1, 1)
    images = (level + 0.2 * torch.randn(n, channels, resolution, resolution, generator=g)).clamp(-1, 1)
    return images, labels


def make_trainer(impl="auto", aug="none", **overrides):
    cfg = GANConfig(**dict(TINY, **overrides), channels=1, num_classes=2, impl=impl, aug=aug)
    images, labels = toy_data(resolution=cfg.resolution)
    return GANTrainer(cfg, images, labels)


def flat_params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def flat_grads(module):
    return torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])


@pytest.mark.parametrize("impl", cpu_kernel_impls())
def test_step_matches_reference_backend(impl):
    # Adam's first steps are sign-like, so rounding-level gradient differences would move
    # weights by a whole learning rate; a tiny rate keeps both runs on the same path and the
    # comparison about the kernels. Step 0 runs every phase: G main, D main and the R1 double
    # backward; the gradients left after each step are compared too.
    # Each run goes start to finish before the next is built: both draw their noise inputs from
    # the global RNG, which a trainer seeds when it is constructed.
    # The Triton interpreter is slow: one step (which already runs every phase) is enough there.
    steps = 1 if "triton" in str(impl) else 2

    def run(which):
        trainer = make_trainer(which, g_lr=1e-7, d_lr=1e-7)
        out = []
        for _ in range(steps):
            stats = trainer.step()
            out.append((stats, flat_grads(trainer.G), flat_grads(trainer.D)))
        return out

    for (a, a_g, a_d), (b, b_g, b_d) in zip(run("ref"), run(impl)):
        assert a.keys() == b.keys()
        for key in a:
            assert math.isclose(a[key], b[key], rel_tol=1e-3, abs_tol=1e-4), (key, a[key], b[key])
        for got, want in ((b_g, a_g), (b_d, a_d)):
            torch.testing.assert_close(got, want, atol=1e-4 * want.abs().max().item(), rtol=1e-2)


def test_path_length_regulariser_runs():
    trainer = make_trainer(pl_weight=2.0, pl_interval=1)
    stats = trainer.step()
    assert stats["pl_penalty"] >= 0 and trainer.pl_mean.item() > 0


def test_resume_reproduces_the_next_step(tmp_path):
    from genmix.training.distributed import DistInfo
    from genmix.training.run import Run

    a = make_trainer(aug="ada")
    for _ in range(3):
        a.step()
    run = Run(tmp_path, "GAN", DistInfo())
    path = run.checkpoint(a)
    expected = {k: float(v) for k, v in a.step().items()}

    b = make_trainer(aug="ada")
    state = load_checkpoint(path)
    b.load_state_dict(state["trainer"])
    run._restore_rng(b, state["rng"])
    assert b.cur_nimg == 3 * TINY["batch"] and b.step_index == 3
    got = {k: float(v) for k, v in b.step().items()}
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    torch.testing.assert_close(flat_params(b.G), flat_params(a.G))
    torch.testing.assert_close(flat_params(b.G_ema), flat_params(a.G_ema))
    assert b.cur_nimg == a.cur_nimg


def test_optimisers_use_the_configured_lr_and_betas():
    # The regulariser is folded into the main step, so no lazy-regularisation scaling applies.
    trainer = make_trainer(g_lr=0.002, d_lr=0.003, r1_interval=16, pl_weight=1.0, pl_interval=4)
    assert trainer.opt_D.param_groups[0]["lr"] == 0.003 and trainer.opt_G.param_groups[0]["lr"] == 0.002
    assert trainer.opt_D.param_groups[0]["betas"] == tuple(trainer.cfg.betas)


def test_replaced_non_finite_gradients_are_counted():
    trainer = make_trainer()
    stats = trainer.step()
    assert stats["nonfinite_grads_G"] == 0 and stats["nonfinite_grads_D"] == 0
    # An inf gradient on one weight (the loss itself stays finite) is replaced and reported.
    weight = next(trainer.G.parameters()).requires_grad_(True)  # the D phase froze G
    hook = weight.register_hook(lambda g: torch.where(torch.arange(g.numel()).view_as(g) == 0,
                                                      torch.full_like(g, float("inf")), g))
    stats = trainer.step()
    hook.remove()
    assert stats["nonfinite_grads_G"] == 1 and stats["nonfinite_grads_D"] == 0
    assert torch.isfinite(weight).all()


def test_non_finite_loss_stops_with_clear_message():
    trainer = make_trainer()
    trainer.step()
    with torch.no_grad():
        next(trainer.D.parameters()).fill_(float("nan"))
    stats = {k: float(v) for k, v in trainer.step().items()}
    with pytest.raises(NonFiniteLossError, match="non-finite .*last checkpoint was kept"):
        trainer.check_finite(stats)


def test_config_validation():
    with pytest.raises(ValueError, match="resolution"):
        GANConfig(resolution=24).validate()
    with pytest.raises(ValueError, match="arch"):
        GANConfig(arch="vae").validate()
    with pytest.raises(ValueError, match="unknown GAN settings: bogus"):
        GANConfig.from_dict({"bogus": 1})
    images, labels = toy_data()
    with pytest.raises(ValueError, match="images must be"):
        GANTrainer(GANConfig(**dict(TINY, resolution=32)), images, labels)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replica_worker(rank, world_size, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from genmix.training import distributed as gdist

    info = gdist.init_from_env("cpu")
    cfg = GANConfig(**dict(TINY, batch=8), channels=1, num_classes=2, aug="ada")
    images, labels = toy_data(resolution=cfg.resolution)
    trainer = GANTrainer(cfg, images, labels, info)
    initial = flat_params(trainer.G)
    for _ in range(3):
        trainer.step()
    torch.save({"G": flat_params(trainer.G), "D": flat_params(trainer.D), "G0": initial,
                "p": trainer.ada_p, "nimg": trainer.cur_nimg}, os.path.join(out_dir, f"rank{rank}.pt"))
    gdist.shutdown()


def test_two_gloo_processes_keep_identical_replicas(tmp_path):
    mp.start_processes(_replica_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(r0["G"], r1["G"]) and torch.equal(r0["D"], r1["D"])
    assert not torch.equal(r0["G"], r0["G0"])  # they trained, in lockstep
    assert r0["nimg"] == r1["nimg"] == 24
    assert r0["p"] == r1["p"]


def test_soft_labels_land_between_their_classes():
    """Conditioning sanity check: after a short training on dark (0) vs bright (1) images, a
    50/50 soft label gives images whose brightness (a perfect classifier's score here) lies
    between the two classes' images."""
    torch.manual_seed(0)
    trainer = make_trainer(batch=16, r1_interval=4, ema_kimg=0.05, g_lr=0.005, d_lr=0.005)
    for _ in range(120):
        trainer.step()
    G = trainer.G_ema
    z = torch.randn(64, TINY["z_dim"], generator=torch.Generator().manual_seed(1))

    def brightness(weight_bright):
        c = torch.tensor([[1 - weight_bright, weight_bright]]).repeat(len(z), 1)
        with torch.no_grad():
            return G(z, c, noise_mode="const").mean().item()

    dark, middle, bright = brightness(0.0), brightness(0.5), brightness(1.0)
    assert dark < middle < bright, (dark, middle, bright)
    assert bright - dark > 0.3  # the two classes are clearly apart
    with torch.no_grad():
        fake_dark = G(z, torch.tensor([[1.0, 0.0]]).repeat(len(z), 1), noise_mode="const")
    assert np.isfinite(fake_dark.numpy()).all()
