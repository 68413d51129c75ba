"""The `genmix` command line (also `python -m genmix`).

User mistakes end in one line on stderr and a non-zero exit: 2 for usage (a bad flag or
setting, a resume with changed settings), 1 at run time (missing or corrupt files, bad data, a
leak between generator and classifier data, non-finite training). Anything else is a bug and
prints its traceback (exit 1).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

from genmix.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other usage error here
        self.exit(2, f"genmix: error: {message}\n")


def _versions() -> dict:
    import numpy
    import torch

    import genmix

    versions = {
        "genmix": genmix.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "numpy": numpy.__version__,
    }
    try:
        import triton

        versions["triton"] = triton.__version__
    except ImportError:
        versions["triton"] = None
    return versions


def _devices() -> list:
    import torch

    devices = [f"cpu ({torch.get_num_threads()} threads)"]
    for i in range(torch.cuda.device_count()):
        devices.append(f"cuda:{i} ({torch.cuda.get_device_name(i)})")
    return devices


def cmd_info(args) -> int:
    from genmix.ops import _backend, backends

    ext = _backend.extension()
    info = {
        "versions": _versions(),
        "devices": _devices(),
        "extension": ext.build_info() if ext is not None else {"error": _backend.extension_error()},
        "ops": backends(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("genmix " + info["versions"]["genmix"])
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if k != "genmix"))
    print("devices:  " + "; ".join(info["devices"]))
    if ext is not None:
        build = ext.build_info()
        print(f"genmix._C: built (cuda kernels: {'yes' if build['cuda'] else 'no'}, "
              f"openmp: {build['openmp'] or 'no'})")
    else:
        print(f"genmix._C: not built ({_backend.extension_error()})")
    for op, rows in info["ops"].items():
        print(f"\n{op}:")
        for name, row in rows.items():
            state = "usable" if row["available"] else "unavailable: " + row["reason"]
            print(f"  {name:<14} {state}")
    return 0


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _ratio_list(text):
    """--synth-ratios: comma-separated numbers > 0."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, e.g. 0.25,0.5,1, got {text!r}") from None
    if not all(0 < v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"every ratio must be > 0, got {text!r}")
    return values


def _nonneg_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def cmd_train_gan(args) -> int:
    from genmix.training.generator import train_generator

    overrides = dict(resolution=args.resolution, kimg=args.kimg, batch=args.batch,
                     aug=args.aug, seed=args.seed, impl=args.impl, snapshot_kimg=args.snapshot_kimg,
                     r1_gamma=args.r1_gamma, pl_weight=args.pl_weight, g_lr=args.lr, d_lr=args.lr,
                     split_seed=args.split_seed, budget_min=args.budget_min, mirror=True if args.mirror else None,
                     **_subset_flags(args))
    # A resumed run keeps its own settings (and family): a preset applies on --resume only when given.
    preset = None if args.preset == "none" and not args.resume else args.preset
    path = train_generator(args.data, args.out, arch=args.arch, preset=preset, overrides=overrides,
                           resume=args.resume, device=args.device, progress=not args.no_progress, log=_say)
    print(f"genmix train-gan: newest checkpoint {path}")
    return 0


def cmd_synthesize(args) -> int:
    from genmix.training.synthesize import synthesize, synthesize_from_real

    per_class = None
    if args.per_class is not None:
        per_class = [int(v) for v in args.per_class.split(",")]
    if args.from_real is not None:
        return _synthesize_from_real(args, per_class, synthesize_from_real)
    for flag in ("strength", "gamma", "data"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag} applies to --from-real edit|diffmix|oversample only")
    if args.gan is None:
        raise UsageError("--gan is required (the generator run to sample from)")
    if per_class is None and not args.balance and args.ratio is None:
        print("genmix: error: one of the arguments --per-class --balance --ratio is required", file=sys.stderr)
        raise SystemExit(2)
    summary = synthesize(args.gan, args.out, per_class=per_class, balance=args.balance, ratio=args.ratio,
                         labels=args.labels, gemix_rule=args.gemix_labels, psi=args.psi, seed=args.seed,
                         device=args.device or "cpu")
    print(f"genmix synthesize: {summary['n']} images {summary['per_class']} -> {summary['path']}")
    return 0


def _synthesize_from_real(args, per_class, synthesize_from_real) -> int:
    from genmix.training.synthesize import from_real_settings

    mode = args.from_real
    from_real_settings(mode, args.strength, args.gamma)  # bad values: one line, exit 2, before any loading
    if args.labels != "onehot" or args.psi != 1.0:
        raise UsageError("--labels and --psi apply to plain synthesis, not to --from-real")
    data = args.data
    if mode == "oversample":
        if args.gan is not None:
            raise UsageError("--gan: an oversampled set holds real images and needs no generator; give --data")
        if data is None:
            raise UsageError("--data is required for --from-real oversample (the real training images)")
        from genmix.data import load_dataset
        from genmix.training.config import SubsetConfig

        split_seed = args.split_seed or 0
        data = SubsetConfig(**_subset_flags(args), split_seed=split_seed).reduce(load_dataset(data, seed=split_seed))
    else:
        if args.gan is None:
            raise UsageError(f"--gan is required for --from-real {mode} (a diffusion generator run)")
        if _subset_flags(args) or args.split_seed is not None:
            raise UsageError("--split-seed and the subset flags apply to --from-real oversample; edit and diffmix "
                             "start from the generator run's own training set")
    summary = synthesize_from_real(args.gan, args.out, mode=mode, data=data, strength=args.strength,
                                   gamma=args.gamma, per_class=per_class, balance=args.balance, ratio=args.ratio,
                                   seed=args.seed, device=args.device or "cpu", log=_say)
    detail = "" if mode == "oversample" else f", strength {summary['strength']:g}" + (
        f", gamma {summary['gamma']:g}" if summary.get("gamma") is not None else "")
    print(f"genmix synthesize --from-real {mode}: {summary['n']} images {summary['per_class']}{detail} "
          f"-> {summary['path']}")
    return 0


def cmd_fid(args) -> int:
    from genmix.training.gan_fid import fid_for_run

    report = fid_for_run(args.gan, args.data, n=args.n, split=args.split, extractor=args.extractor,
                         device=args.device or "cpu", seed=args.seed, out=args.out)
    overall = report["overall"]
    print(f"genmix fid ({report['extractor']}): FID {overall['fid']:.2f}  "
          f"KID {overall['kid']:.4f} ± {overall['kid_std']:.4f}")
    for row in report["per_class"]:
        fid = "n/a" if row["fid"] is None else f"{row['fid']:.2f}"
        print(f"  {row['name']:<16} FID {fid}  (real {row['n_real']}, generated {row['n_fake']})")
    return 0


def cmd_train_classifier(args) -> int:
    from genmix.training.classifier import ClassifierConfig, train_classifier

    values = {k: getattr(args, k) for k in ("model", "mix", "alpha", "synthetic", "synth_ratio", "epochs",
                                            "batch", "optimizer", "lr", "weight_decay", "patience",
                                            "seed", "split_seed", "impl", "dropout", "label_smoothing",
                                            "remix_kappa", "remix_tau", "train_fraction", "max_per_class",
                                            "rare_class", "rare_fraction")
              if getattr(args, k) is not None}
    for flag in ("synth_balance", "class_balanced", "mix_balance", "hflip"):
        if getattr(args, flag):
            values[flag] = True
    if not args.resume:  # a new run: every setting, defaults included; a resume: what was asked
        values = ClassifierConfig(**values)
    summary = train_classifier(args.data, args.out, values, resume=args.resume, device=args.device,
                               progress=not args.no_progress, log=_say)
    print(f"genmix train-classifier: best val macro-F1 {summary.get('best_f1', float('nan')):.4f} "
          f"at epoch {summary.get('best_epoch')}; weights in {args.out}/best.safetensors")
    return 0


def cmd_evaluate(args) -> int:
    from genmix.evaluation.classifier import evaluate_run

    metrics = evaluate_run(args.model, args.data, split=args.split, out_dir=args.out,
                           device=args.device or "cpu", plots=not args.no_plots, feature_method=args.features)
    auc = "n/a" if metrics["auc"] is None else f"{metrics['auc']:.4f}"
    print(f"genmix evaluate ({metrics['split']}, n={metrics['n']}): accuracy {metrics['accuracy']:.4f}  "
          f"macro-F1 {metrics['macro_f1']:.4f}  AUC {auc}  ECE {metrics['ece']:.4f}")
    for row in metrics["per_class"]:
        sens = "n/a" if row["sensitivity"] is None else f"{row['sensitivity']:.3f}"
        spec = "n/a" if row["specificity"] is None else f"{row['specificity']:.3f}"
        print(f"  {row['name']:<16} sensitivity {sens}  specificity {spec}  support {row['support']}")
    return 0


def cmd_evaluate_generator(args) -> int:
    from genmix.evaluation.generator import evaluate_generator

    result = evaluate_generator(args.gan, args.data, n=args.n, out=args.out, device=args.device or "cpu",
                                extractor=args.extractor, model=args.model, epochs=args.epochs, seed=args.seed,
                                progress=not args.no_progress)
    tstr = result["tstr"]
    print(f"genmix evaluate-generator ({result['extractor']}): FID {result['fid']:.2f} (floor "
          f"{result['fid_floor']:.2f})  KID {result['kid']:.4f} (floor {result['kid_floor']:.4f})  "
          f"precision {result['precision']:.3f}  recall {result['recall']:.3f}")
    print(f"  TSTR macro-F1 {tstr['macro_f1']:.4f} vs TRTR {tstr['real_macro_f1']:.4f} (ratio {tstr['ratio']:.3f}); "
          f"AUC {_fmt(tstr['auc'])} vs {_fmt(tstr['real_auc'])}")
    return 0


def _subset_flags(args) -> dict:
    return {k: getattr(args, k) for k in ("train_fraction", "max_per_class", "rare_class", "rare_fraction")
            if getattr(args, k, None) is not None}


def _add_subset_flags(parser) -> None:
    parser.add_argument("--train-fraction", type=float,
                        help="train on this share of every class (stratified, from the split seed; val/test untouched)")
    parser.add_argument("--max-per-class", type=int, help="then cap every class at this many training images")
    parser.add_argument("--rare-class", help="make this class (a name) rarer: keep only --rare-fraction of it")
    parser.add_argument("--rare-fraction", type=float, help="the share of --rare-class that is kept")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _say(text: str) -> None:
    print(f"genmix: {text}", file=sys.stderr)


def _run_pipeline(cfg, progress: bool, rerun_changed: bool = False) -> int:
    from genmix.pipeline import run_experiment

    path = run_experiment(cfg, progress=progress, log=lambda text: print(text, file=sys.stderr),
                          rerun_changed=rerun_changed)
    print(f"genmix: report written to {path}")
    return 0


def cmd_experiment(args) -> int:
    from genmix.pipeline import load_config_file, make_config

    file_values = load_config_file(args.config) if args.config else {}
    preset = args.preset or file_values.pop("preset", None) or "cpu"
    flags = dict(data=args.data, out=args.out, seeds=args.seeds, folds=args.folds, model=args.model,
                 epochs=args.epochs, patience=args.patience, device=args.device, impl=args.impl,
                 split_seed=args.split_seed,
                 gan_arch=args.gan_arch, gan_preset=args.gan_preset, gan_mirror=args.gan_mirror or None,
                 gemix_labels=args.gemix_labels, edit_strength=args.edit_strength,
                 diffmix_strength=args.diffmix_strength, diffmix_gamma=args.diffmix_gamma,
                 concurrent_runs=args.concurrent_runs, **_subset_flags(args),
                 train_fractions=[float(v) for v in args.train_fractions.split(",")] if args.train_fractions else None,
                 strategies=args.strategies.split(",") if args.strategies else None, synth_ratios=args.synth_ratios)
    if flags["data"] is None and "data" not in file_values:
        raise UsageError("--data is required (or `data = ...` in the --config file)")
    if flags["out"] is None and "out" not in file_values:
        raise UsageError("--out is required (or `out = ...` in the --config file)")
    cfg = make_config(preset, file_values, flags)
    return _run_pipeline(cfg, progress=not args.no_progress, rerun_changed=args.rerun_changed)


def cmd_demo(args) -> int:
    from genmix.demo import demo_config, plan_text

    cfg = demo_config(args.preset, args.out, args.device)
    if args.dry_run:
        print(plan_text(cfg))
        return 0
    return _run_pipeline(cfg, progress=not args.no_progress)


SPLIT_SEED_HELP = ("seed of the train/val/test split where the data has none (default 0); a property of "
                   "the data, so a generator and the classifiers it serves must share it")


def build_parser() -> argparse.ArgumentParser:
    from genmix.training.gan import PRESETS as GAN_PRESETS

    parser = _Parser(prog="genmix", description="Generative mixup for medical image classification.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    info = sub.add_parser("info", help="versions, devices, and which kernel backends are usable here")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=cmd_info)

    impls = ["auto", "cuda", "triton", "cpp", "ref"]
    gan = sub.add_parser("train-gan", aliases=["train-generator"],
                         help="train a class-conditional generator (StyleGAN2-ADA, DCGAN or the soft-label "
                              "diffusion model) on a dataset")
    gan.add_argument("--data", required=True, help="dataset SPEC: file.npz, a folder, medmnist:<flag> or phantom")
    gan.add_argument("--out", required=True, help="run directory (config, checkpoints, samples)")
    gan.add_argument("--preset", choices=list(GAN_PRESETS) + ["none"],
                     help="starting values for everything below (default cpu: about 6 minutes on 2 cores; "
                          "cpu-long about 45; gpu a real run; on --resume the run's own)")
    gan.add_argument("--arch", choices=["stylegan2", "dcgan", "diffusion"],
                     help="generator family (default diffusion, the soft-label diffusion model; on --resume the "
                          "run's own)")
    gan.add_argument("--resolution", type=int, help="network resolution, a power of two (default: data size rounded up)")
    gan.add_argument("--kimg", type=_positive_float, help="length of training in thousands of real images shown")
    gan.add_argument("--batch", type=int)
    gan.add_argument("--aug", choices=["ada", "none"])
    gan.add_argument("--lr", type=_positive_float, help="Adam learning rate of G and D")
    gan.add_argument("--r1-gamma", type=float, help="R1 weight (default: 0.0002 * resolution^2 / batch)")
    gan.add_argument("--pl-weight", type=float, help="path-length regularisation weight (0 = off)")
    gan.add_argument("--snapshot-kimg", type=_positive_float, help="checkpoint and sample grid every this many kimg")
    gan.add_argument("--budget-min", type=_positive_float,
                     help="stop after this many minutes of training (the presets' own budget otherwise)")
    gan.add_argument("--mirror", action="store_true", help="add x-flipped copies of the training images")
    gan.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    gan.add_argument("--seed", type=_nonneg_int, help="model seed (initialisation, latents, augmentation)")
    gan.add_argument("--split-seed", type=_nonneg_int, help=SPLIT_SEED_HELP)
    _add_subset_flags(gan)
    gan.add_argument("--impl", choices=impls, help="kernel backend for the fused ops")
    gan.add_argument("--device", choices=["cpu", "cuda"])
    gan.add_argument("--no-progress", action="store_true", help="no progress bar")
    gan.set_defaults(func=cmd_train_gan)

    syn = sub.add_parser("synthesize", help="generate a synthetic training set from a GAN run, or from real "
                                            "images (--from-real)")
    syn.add_argument("--gan", help="generator run directory (from train-gan); for --from-real edit|diffmix a "
                                   "diffusion run")
    syn.add_argument("--out", required=True, help="output .npz (MedMNIST layout + soft_labels)")
    count = syn.add_mutually_exclusive_group()
    count.add_argument("--per-class", help="images per class: one number, or one per class (comma-separated)")
    count.add_argument("--balance", action="store_true", help="bring every class up to the largest class")
    count.add_argument("--ratio", type=float,
                       help="round(RATIO x real training images) in all, split evenly over the classes "
                            "(--from-real default: 0.5, the '+50%%' setting an experiment appends)")
    syn.add_argument("--labels", choices=["onehot", "gemix"], default="onehot",
                     help="one-hot labels, or GeMix Dirichlet soft labels (default onehot)")
    syn.add_argument("--gemix-labels", choices=["paper", "code"], default="code",
                     help="GeMix label rule: paper (two class-biased Dirichlet vectors blended by lam ~ Beta) "
                          "or code (one Dirichlet, larger concentration on the chosen class; default)")
    syn.add_argument("--psi", type=float, default=1.0, help="truncation psi (1 = none)")
    syn.add_argument("--from-real", choices=["edit", "diffmix", "oversample"],
                     help="start from real training images: edit (noised to --strength, denoised with their own "
                          "label by the diffusion run), diffmix (denoised towards another class, class-balanced "
                          "targets, label (1 - s^gamma) y_src + s^gamma y_tgt) or oversample (the real images "
                          "themselves, the control; no generator). Resumes an interrupted run of the same command")
    syn.add_argument("--strength", type=float,
                     help="--from-real edit|diffmix: noise level s in [0, 1] on the sampler's schedule (0: the "
                          "image itself, 1: the label alone; default 0.5: the image's layout stays, detail is "
                          "redrawn)")
    syn.add_argument("--gamma", type=float,
                     help="--from-real diffmix: label exponent gamma > 0 (default 1: the target's weight is s)")
    syn.add_argument("--data", help="--from-real: the real images (dataset SPEC); edit|diffmix default to the "
                                    "generator run's own training set, oversample needs it")
    syn.add_argument("--split-seed", type=_nonneg_int, help="--from-real oversample: " + SPLIT_SEED_HELP)
    _add_subset_flags(syn)
    syn.add_argument("--seed", type=_nonneg_int, default=0)
    syn.add_argument("--device", choices=["cpu", "cuda"])
    syn.set_defaults(func=cmd_synthesize)

    fid = sub.add_parser("fid", help="FID and KID of a GAN run against real images, overall and per class")
    fid.add_argument("--gan", required=True, help="GAN run directory")
    fid.add_argument("--data", help="dataset SPEC (default: the one the GAN was trained on)")
    fid.add_argument("--n", type=int, default=2000, help="number of generated images (default 2000)")
    fid.add_argument("--split", choices=["train", "val", "test"], default="train")
    fid.add_argument("--extractor", choices=["auto", "inception", "random"], default="auto",
                     help="feature network: TF-FID Inception-v3, or the documented random-conv fallback")
    fid.add_argument("--out", help="JSON file for the report (default: GAN_DIR/fid.json)")
    fid.add_argument("--seed", type=_nonneg_int, default=0)
    fid.add_argument("--device", choices=["cpu", "cuda"])
    fid.set_defaults(func=cmd_fid)

    from genmix.mixing import STRATEGIES
    from genmix.models.classifiers import CLASSIFIERS

    clf = sub.add_parser("train-classifier", help="train a classifier with a mixing strategy")
    clf.add_argument("--data", required=True, help="dataset SPEC")
    clf.add_argument("--out", required=True, help="run directory")
    clf.add_argument("--model", choices=CLASSIFIERS, default="resnet18")
    clf.add_argument("--mix", choices=STRATEGIES, default="none", help="mixing strategy (default none)")
    clf.add_argument("--synthetic", help="synthetic set (.npz from genmix synthesize) for synth/genmix/gemix")
    clf.add_argument("--alpha", type=_positive_float, help="the strategy's mixing parameter (GenMix default 0.3)")
    clf.add_argument("--synth-ratio", type=float, help="synth: synthetic images as a share of the real set (default 0.5)")
    clf.add_argument("--synth-balance", action="store_true", help="synth: bring every class up to the largest")
    clf.add_argument("--epochs", type=int, help="at most this many epochs (default 100, with --patience 20: the "
                                               "MedMNIST-comparable protocol)")
    clf.add_argument("--batch", type=int)
    clf.add_argument("--optimizer", choices=["adamw", "sgd"])
    clf.add_argument("--lr", type=_positive_float)
    clf.add_argument("--weight-decay", type=float)
    clf.add_argument("--dropout", type=float)
    clf.add_argument("--label-smoothing", type=float)
    clf.add_argument("--patience", type=_nonneg_int,
                     help="early stopping on val macro-F1 after N epochs without a better one (default 20; 0 = off)")
    clf.add_argument("--class-balanced", action="store_true", help="sample batches class-balanced")
    clf.add_argument("--mix-balance", action="store_true",
                     help="mixup/genmix/gemix: class-balanced real batches and mixing partners")
    clf.add_argument("--remix-kappa", type=float,
                     help="mixup/genmix/gemix: Remix labels (minority label when one class is kappa times as "
                          "common and holds under tau of the pixels; Chou et al. 2020 use 3)")
    clf.add_argument("--remix-tau", type=float, help="Remix threshold tau (default 0.5)")
    clf.add_argument("--hflip", action="store_true", help="random horizontal flips")
    clf.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    clf.add_argument("--seed", type=_nonneg_int, help="model seed (initialisation, data order, mixing)")
    clf.add_argument("--split-seed", type=_nonneg_int, help=SPLIT_SEED_HELP)
    _add_subset_flags(clf)
    clf.add_argument("--impl", choices=impls)
    clf.add_argument("--device", choices=["cpu", "cuda"])
    clf.add_argument("--no-progress", action="store_true")
    clf.set_defaults(func=cmd_train_classifier)

    ev = sub.add_parser("evaluate", help="metrics.json and plots of a classifier run on a split")
    ev.add_argument("--model", required=True, help="classifier run directory")
    ev.add_argument("--data", help="dataset SPEC (default: the one the model was trained on)")
    ev.add_argument("--split", choices=["train", "val", "test"], default="test")
    ev.add_argument("--out", help="output directory (default: the run directory)")
    ev.add_argument("--no-plots", action="store_true")
    ev.add_argument("--features", choices=["pca", "tsne"], default="pca",
                    help="2-D map of penultimate features: PCA (fast) or t-SNE")
    ev.add_argument("--device", choices=["cpu", "cuda"])
    ev.set_defaults(func=cmd_evaluate)

    evg = sub.add_parser("evaluate-generator", help="judge a generator run: FID/KID against the real-vs-real "
                                                    "floor, precision/recall, TSTR against TRTR")
    evg.add_argument("--gan", required=True, help="generator run directory")
    evg.add_argument("--data", help="dataset SPEC (default: the one the generator was trained on)")
    evg.add_argument("--n", type=int, help="generated images for FID/KID and precision/recall "
                                           "(default: the training set size, at most 2000)")
    evg.add_argument("--out", help="JSON file (default: GAN_DIR/generator_eval.json)")
    evg.add_argument("--extractor", choices=["auto", "inception", "random"], default="auto")
    evg.add_argument("--model", choices=CLASSIFIERS, default="small_cnn", help="TSTR/TRTR classifier")
    evg.add_argument("--epochs", type=int, default=20, help="TSTR/TRTR training epochs (default 20)")
    evg.add_argument("--seed", type=_nonneg_int, default=0)
    evg.add_argument("--device", choices=["cpu", "cuda"])
    evg.add_argument("--no-progress", action="store_true")
    evg.set_defaults(func=cmd_evaluate_generator)

    exp = sub.add_parser("experiment", help="the whole comparison on a dataset: GAN, synthesis, every "
                                            "strategy, evaluation, report.md (resumable)")
    exp.add_argument("--data", help="dataset SPEC")
    exp.add_argument("--out", help="experiment directory")
    exp.add_argument("--strategies", help=f"comma-separated, from {','.join(STRATEGIES)} "
                                          "(default none,mixup,cutmix,oversample,synth,genmix,gemix; edit and "
                                          "diffmix need --gan-arch diffusion); mixup, genmix and "
                                          "gemix take +balanced (class-balanced batches and partners) and "
                                          "+remix (Remix labels), e.g. gemix+balanced+remix")
    exp.add_argument("--folds", type=_nonneg_int, help="k-fold cross-validation over train+val (default: the data's split)")
    exp.add_argument("--seeds", type=int, help="repeats with seeds 0..N-1")
    exp.add_argument("--preset", choices=["tiny", "cpu", "gpu", "medmnist"],
                     help="default cpu; medmnist: the MedMNIST v2 classifier recipe (ResNet-18, 100 epochs, "
                          "early stopping, 5 seeds) for a GPU")
    exp.add_argument("--model", choices=CLASSIFIERS)
    exp.add_argument("--epochs", type=int)
    exp.add_argument("--patience", type=_nonneg_int, help="early stopping on val macro-F1 after N epochs (0 = off)")
    exp.add_argument("--config", help="TOML file holding any of these settings (flags win)")
    exp.add_argument("--split-seed", type=_nonneg_int, help=SPLIT_SEED_HELP)
    _add_subset_flags(exp)
    exp.add_argument("--train-fractions", help="a learning curve: the whole comparison at each of these training-set "
                                               "shares, e.g. 0.05,0.1,0.25,1.0")
    exp.add_argument("--synth-ratios", type=_ratio_list,
                     help="a sweep of the appended share, e.g. 0.25,0.5,1: synth, edit, diffmix and the oversample "
                          "control run again at each ratio (appended images per real training image), each paired "
                          "against none; report.md gets a table and a figure of the differences")
    exp.add_argument("--gan-arch", help="generator family, or several comma-separated for a strategy x "
                                        "generator table: stylegan2, dcgan, diffusion (default diffusion)")
    exp.add_argument("--gan-preset", choices=list(GAN_PRESETS),
                     help="the generator's preset (time budget); default: the experiment preset's")
    exp.add_argument("--gan-mirror", action="store_true",
                     help="x-flips of the generator's training images (only where anatomy has no handedness)")
    exp.add_argument("--gemix-labels", choices=["paper", "code"], help="GeMix label rule (default code)")
    exp.add_argument("--edit-strength", type=float,
                     help="edit: noise level s in [0, 1] on the sampler's schedule (default 0.5)")
    exp.add_argument("--diffmix-strength", type=float, help="diffmix: noise level s in [0, 1] (default 0.5)")
    exp.add_argument("--diffmix-gamma", type=float,
                     help="diffmix: label exponent gamma > 0, label (1 - s^gamma) y_src + s^gamma y_tgt (default 1)")
    exp.add_argument("--rerun-changed", action="store_true",
                     help="replace stages whose settings changed since they ran (default: refuse)")
    exp.add_argument("--concurrent-runs", type=_positive_int,
                     help="classifier runs trained at once, one worker process each (default: 1 on the CPU; on a "
                          "GPU one per two CPU cores, at most 8); every run keeps its own RNG streams, checkpoints "
                          "and --resume, and its result does not depend on this")
    exp.add_argument("--impl", choices=impls)
    exp.add_argument("--device", choices=["cpu", "cuda"])
    exp.add_argument("--no-progress", action="store_true")
    exp.set_defaults(func=cmd_experiment)

    demo = sub.add_parser("demo", help="the whole pipeline on the embedded phantom dataset: the diffusion "
                                       "generator, every generative strategy, the oversample control, a verdict")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--preset", choices=["tiny", "cpu", "gpu"], default="cpu",
                      help="cpu: within 15 minutes on a 2-core CPU (default); gpu: a real run; tiny: a test run")
    demo.add_argument("--device", choices=["cpu", "cuda"])
    demo.add_argument("--dry-run", action="store_true",
                      help="print the stages and their expected times on a 2-core CPU, and run nothing")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("genmix: interrupted", file=sys.stderr)
        return 130
    except _usage_errors() as exc:
        print(f"genmix: error: {exc}", file=sys.stderr)
        return 2
    except _run_errors() as exc:
        print(f"genmix: error: {exc}", file=sys.stderr)
        return 1


def _usage_errors() -> tuple:
    from genmix.errors import UsageError

    return (UsageError,)


def _run_errors() -> tuple:
    """User-fixable run-time problems. Everything else is a bug: it keeps its traceback."""
    from genmix.data import DataError
    from genmix.errors import UserRunError
    from genmix.metrics.fid import ExtractorUnavailable
    from genmix.ops import BackendUnavailable
    from genmix.training.checkpoint import CheckpointError

    return (UserRunError, DataError, CheckpointError, BackendUnavailable, ExtractorUnavailable,
            FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)
