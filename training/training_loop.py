"""The training loop of the fingerprinted StyleGAN2 (one process; many under torch.distributed).

Determinism: everything random in a training step is drawn after seeding torch with
(seed, step, phase, round), where a "round" is one per-GPU batch of the global batch; real
images come from a sampler whose order depends only on (seed, position). So a step does not
depend on what happened before it except through the saved state, resuming is exact, and one
process accumulating ``batch / batch_gpu`` rounds equals that many processes of one round each.
The run folder, log, ticks, snapshots and training states are the shared scaffold of training/run.py.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from data.dataset import ImageDataset
from dnnlib.util import seed_for
from metrics import metric_main
from networks.autoencoder import AutoencoderDecoder, DecoderWithLatent
from networks.checkpoint import load_network, read_header
from networks.presets import build_networks, get_preset
from networks.sg2_fingerprint import SG2FingerprintedGenerator
from torch_utils import distributed as dist_utils
from torch_utils.bits import random_fingerprints
from torch_utils.images import save_image_grid
from torch_utils.misc import ema_beta, update_ema
from training.augment import FingerprintAugment
from training.loss import FingerprintGANLoss, LossWeights
from training.run import Run, cuda_max_alloc_gb, endless_batches, sanitize_grads_, split_batch
from training.run_state import first_line, writing


@dataclass(frozen=True)
class TrainingOptions:
    data: str                                    # Dataset (zip or folder from dataset_tool.py).
    outdir: str                                  # Parent folder of run folders.
    cfg: str | None = None                       # Named config the defaults came from (training/configs.py).
    preset: str = "tiny32"                       # Network preset.
    n_bits: int | None = None                     # Fingerprint bits (None: the preset's; 0: plain StyleGAN2).
    mod_range: tuple[int, int] | None = None     # Modulated resolutions (None: the preset's).
    c_encoding: str | None = None                # 'raw' (release) or 'pm1' (None: the preset's).
    embed_lr_multiplier: float | None = None     # E's lr multiplier (None: the preset's 0.01).
    embed_layers: int | None = None              # Depth of E (None: the preset's 8).
    f_head: int | None = None                    # Width of F's last hidden layer (None: the preset's).
    fp_decoder: str | None = None                # Start F from this autoencoder's decoder (train_fingerprint_ae.py).
    freeze_decoder: bool = False                 # ... and keep its bit decoder fixed (only the latent head trains).
    baseline: str | None = None                  # Start from this plain run's snapshot (fingerprint at the identity),
                                                 # or a standard StyleGAN2's network file (legacy.py): fine-tuning.
    shared_change: float | None = None           # Weight of the change c and 1 - c share (None: off).
    train_params: str | None = None              # What of G trains: all (None), or on a standard StyleGAN2 'embedding'
                                                 # (the fingerprint module) or 'affine' (+ the style affines).
    shared_lr: float | None = None               # lr of the trained parameters all users share (None: lr).
    batch: int = 16                              # Global batch size.
    batch_gpu: int | None = None                 # Per-process round size (None: batch / gpus).
    gpus: int = 1                                # Processes.
    lr: float = 0.002                            # Adam learning rate of G and D.
    f_lr: float | None = None                    # Learning rate of F (None: lr).
    f_beta1: float = 0.0                         # Adam beta1 of F (release: 0, like G and D).
    weights: LossWeights = field(default_factory=LossWeights)
    consistency_noise: str = "independent"       # The consistency pair's noise: 'independent' (release) or 'paired'.
    consistency_to: str = "pair"                 # G(z, c) held to G(z, c') ('pair', release) or to 'baseline' G_ema.
    g_reg_interval: int = 4                      # Path-length regularisation every N steps (0: off).
    d_reg_interval: int = 16                     # R1 every N steps (0: off).
    ema_kimg: float = 10.0                       # G_ema half-life in kimg.
    ema_rampup: float | None = None              # Half-life at most this fraction of the images seen (None: off).
    mirror: bool = False                         # x-flip augmentation of the reals.
    total_kimg: float = 1000.0                   # Training length in thousands of real images shown.
    minutes: float | None = None                 # ... or this much training time, whichever ends first.
    tick_kimg: float = 4.0                       # Progress report interval.
    snap: int = 50                               # Ticks between network snapshots and image grids.
    seed: int = 0
    device: str = "cpu"                          # 'cpu' or 'cuda'.
    amp: bool = False                            # bfloat16 autocast (CUDA and CPU).
    channels_last: bool = False                  # NHWC memory format for the networks (faster convolutions on CPU).
    compile: bool = False                        # torch.compile the networks.
    workers: int = 2                             # DataLoader workers per process.
    fp_warmup: float | None = None               # Warm-up: the terms below are off until batch bit acc > this,
    fp_ramp_kimg: float = 4.0                    # ... then ramped linearly to full weight over this many kimg.
    fp_warmup_terms: tuple[str, ...] = ("consistency", "adversarial", "latent_rec")
    guard_kimg: float = 200.0                    # Warn if bit accuracy is still ~0.5 after this many kimg.
    augment_fp: str | None = None                # Immunization: perturbations before F (training/augment.py spec).
    metrics: tuple[str, ...] = ("quality_snapshot",)  # At each snapshot (metrics/metric_main.py).
    inception: str | None = None                 # Inception-v3 (TorchScript path or URL) for FID metrics.

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mod_range"] = None if self.mod_range is None else list(self.mod_range)
        d["metrics"] = list(self.metrics)
        d["fp_warmup_terms"] = list(self.fp_warmup_terms)
        return d


def _desc(opts: TrainingOptions, n_bits: int) -> str:
    data = Path(opts.data).name.split(".")[0]
    cfg = f"{opts.cfg}-" if opts.cfg else ""
    return f"{data}-{cfg}{opts.preset}-fp{n_bits}-batch{opts.batch}"


def _real_batch(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device, non_blocking=True).to(torch.float32) / 127.5 - 1


def _decoder_from_autoencoder(opts: TrainingOptions, G) -> DecoderWithLatent:
    """F built from the decoder of a stage-1 autoencoder snapshot (its architecture, its weights)."""
    dec = load_network(opts.fp_decoder, names=["decoder"])["decoder"]
    if not isinstance(dec, AutoencoderDecoder):
        raise ValueError(f"{opts.fp_decoder}: 'decoder' is a {type(dec).__name__}, not an autoencoder's decoder")
    if dec.n_bits != G.n_bits or dec.img_resolution != G.img_resolution:
        raise ValueError(f"{opts.fp_decoder}: the decoder reads {dec.n_bits} bits at "
                         f"{dec.img_resolution}x{dec.img_resolution}, the generator makes {G.n_bits} bits at "
                         f"{G.img_resolution}x{G.img_resolution}")
    decoder = DecoderWithLatent.from_decoder(dec, G.z_dim)
    if opts.freeze_decoder:
        decoder.decoder.requires_grad_(False)
    return decoder


def _g_param_groups(G, opts: TrainingOptions) -> list[dict]:
    """G's trained parameters for Adam: one group at --lr, or with --shared-lr the fingerprint module at --lr and
    the parameters every user shares at --shared-lr (the lazy-regularisation ratio applies to both)."""
    trained = [(name, p) for name, p in G.named_parameters() if p.requires_grad]
    if opts.shared_lr is None:
        return [{"params": [p for _, p in trained]}]
    ratio = opts.shared_lr / opts.lr
    own = [p for name, p in trained if name.startswith("fingerprint.")]
    shared = [p for name, p in trained if not name.startswith("fingerprint.")]
    return [{"params": own}, {"params": shared, "lr_scale": ratio}]


def _build(opts: TrainingOptions, preset, device: torch.device,
           plain_sg2: dict[str, torch.nn.Module] | None = None) -> dict[str, torch.nn.Module]:
    """G, G_ema, D and F on ``device``; running out of memory is one clear ``ValueError``.

    ``plain_sg2``: the networks of a standard StyleGAN2 file (``--baseline``): G is its G_ema with a fingerprint
    module at the identity (``SG2FingerprintedGenerator.from_plain``), D its D; only F is new.
    """
    try:
        if plain_sg2 is None:
            nets = build_networks(preset)
        else:
            fingerprint = dict(embed_layers=preset.embed_layers, embed_hidden=preset.embed_hidden,
                               embed_lr_multiplier=preset.embed_lr_multiplier, c_encoding=preset.c_encoding)
            nets = {"G": SG2FingerprintedGenerator.from_plain(plain_sg2["G_ema"], preset.n_bits, **fingerprint),
                    "D": plain_sg2["D"], **build_networks(preset, which=("F",))}
        if opts.fp_decoder is not None:
            nets["F"] = _decoder_from_autoencoder(opts, nets["G"])
        fmt = torch.channels_last if opts.channels_last else torch.contiguous_format
        G, D, F = (nets[k].to(device, memory_format=fmt).train() for k in ("G", "D", "F"))
        nets = {"G": G, "G_ema": copy.deepcopy(G).eval().requires_grad_(False), "D": D, "F": F}
    except (RuntimeError, MemoryError) as e:
        raise ValueError(f"cannot allocate the networks of --preset {opts.preset} with {preset.n_bits}-bit "
                         f"fingerprints on {device} ({first_line(e)}); use fewer --bits, a smaller --f-head or "
                         "--embed-layers, or a device with more memory") from e
    return nets


# Network constructor arguments -> the option that sets them, for the --resume compatibility message.
_OPTION_OF = {"n_bits": "--bits", "bits": "--bits", "mod_range": "--res-modulated-range",
              "embed_layers": "--embed-layers", "embed_lr_multiplier": "--embed-lrmul", "c_encoding": "--c-encoding",
              "head_channels": "--f-head", "img_resolution": "--preset", "channel_base": "--preset",
              "channel_max": "--preset", "z_dim": "--preset", "w_dim": "--preset"}


def _init_from_snapshot(path: str, nets: dict[str, torch.nn.Module], device: torch.device) -> None:
    """Fill G, G_ema, D and F from a network snapshot, after checking that it has this run's architecture."""
    header = read_header(path)
    if set(header["networks"]) != set(nets):
        raise ValueError(f"--resume {path} holds {sorted(header['networks'])}, not a training snapshot (G, G_ema, "
                         "D, F): give a network-snapshot-*.safetensors of train_stylegan2_fp.py")
    diffs: dict[tuple[str, str, str], list[str]] = {}
    for name, net in nets.items():
        theirs, ours = header["networks"][name], json.loads(json.dumps(net.init_kwargs))
        if theirs["class"] != type(net).__name__:
            diffs.setdefault(("class", theirs["class"], type(net).__name__), []).append(name)
            continue
        for key in sorted(set(theirs["kwargs"]) | set(ours)):
            a, b = theirs["kwargs"].get(key), ours.get(key)
            if a != b:
                diffs.setdefault((key, json.dumps(a), json.dumps(b)), []).append(name)
    if diffs:
        shown = [f"{key} of {'/'.join(names)} is {a} in the snapshot but {b} here"
                 + (f" ({_OPTION_OF[key]})" if key in _OPTION_OF else "")
                 + (" (--fp-decoder: the autoencoder snapshot it started from)" if a == DecoderWithLatent.__name__
                    else "")
                 for (key, a, b), names in list(diffs.items())[:4]]
        raise ValueError(f"--resume {path} does not fit this run's networks: {'; '.join(shown)}; give the options "
                         "it was trained with (its run's training_options.json), or --resume none")
    snap = load_network(path, device=device, names=list(nets))
    for name, net in nets.items():
        try:
            net.load_state_dict(snap[name].state_dict())
        except RuntimeError as e:
            raise ValueError(f"--resume {path}: its {name} does not fit this run's ({first_line(e)}); give the "
                             "options it was trained with, or --resume none") from e


def _baseline_kind(path: str) -> str:
    """'sg2' for a standard StyleGAN2's network file (legacy.py's import, or a plain run of an sg2 preset), else
    'paper' (a plain run of the paper's architecture, checked when it is read)."""
    return "sg2" if read_header(path)["networks"].get("G", {}).get("class") == "SG2Generator" else "paper"


def _read_sg2_baseline(path: str, preset, device: torch.device) -> dict[str, torch.nn.Module]:
    """A standard StyleGAN2 (G, G_ema: SG2Generator, D: SG2Discriminator), checked against the run's preset."""
    header = read_header(path)["networks"]
    classes = {name: header.get(name, {}).get("class") for name in ("G", "G_ema", "D")}
    if classes != {"G": "SG2Generator", "G_ema": "SG2Generator", "D": "SG2Discriminator"}:
        raise ValueError(f"--baseline {path} holds {sorted(header)}: fine-tuning a standard StyleGAN2 needs its G, "
                         "G_ema and D (legacy.py --source network-snapshot.pkl writes them)")
    if preset.architecture != "sg2":
        raise ValueError(f"--baseline {path} is a standard StyleGAN2: give an sg2 preset (--preset sg2tiny32, or one "
                         "of networks/presets.py with architecture 'sg2') for its fingerprint decoder F")
    res = header["G"]["kwargs"]["img_resolution"]
    if res != preset.resolution:
        raise ValueError(f"--baseline {path} generates {res}x{res} but --preset {preset.resolution}x"
                         f"{preset.resolution}: give a preset (and data) of its resolution")
    return load_network(path, device=device, names=["G", "G_ema", "D"])


def _read_baseline(path: str, nets: dict[str, torch.nn.Module], device: torch.device) -> dict[str, torch.nn.Module]:
    """A plain run's snapshot (trained with --bits 0, the same preset), checked: its G, G_ema, D and F."""
    header = read_header(path)
    g = header["networks"].get("G", {})
    if set(header["networks"]) != set(nets) or g.get("class") != "Generator" or g.get("kwargs", {}).get("n_bits"):
        raise ValueError(f"--baseline {path} is not a snapshot of a plain run (train_stylegan2_fp.py --bits 0 "
                         "holding G, G_ema, D and F); give one of the baseline's network-snapshot-*.safetensors")
    return load_network(path, device=device, names=list(nets))


def _start_from_baseline(path: str, snap: dict[str, torch.nn.Module], nets: dict[str, torch.nn.Module]) -> None:
    """Start a fingerprinted run from a plain run's networks ``snap``: G and G_ema take its weights with the
    fingerprint modulation at the identity (``Generator.start_from_plain``), D its weights, and F (unless it
    comes from --fp-decoder) its trunk and latent outputs."""
    try:
        nets["G"].start_from_plain(snap["G"])
        nets["G_ema"].start_from_plain(snap["G_ema"])
        nets["D"].load_state_dict(snap["D"].state_dict())
        if not isinstance(nets["F"], DecoderWithLatent):
            nets["F"].start_from_plain(snap["F"])
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"--baseline {path} does not fit this run's networks ({first_line(e)}); train the "
                         "baseline with this run's --cfg and --preset and --bits 0") from e


def _reference(G0: torch.nn.Module, device: torch.device, channels_last: bool) -> torch.nn.Module:
    """The baseline's G_ema, frozen: what ``--consistency-to baseline`` holds the fingerprinted images to."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return G0.to(device, memory_format=fmt).eval().requires_grad_(False)


def training_loop(opts: TrainingOptions, info: dist_utils.ProcessInfo, resume: str = "auto") -> Path:
    """Train; returns the run folder. Called once per process.

    ``resume``: 'auto' continues the newest run in ``opts.outdir`` with the same options from
    its newest readable training state; 'none' always starts a new run; a path to a network
    snapshot starts a new run from its G, G_ema, D and F.
    """
    device = info.device
    batch_gpu, rounds = split_batch(opts.batch, opts.batch_gpu, info.world_size)   # Rounds per process per step.

    # --- Networks -----------------------------------------------------------------------------
    overrides = {k: v for k, v in dict(n_bits=opts.n_bits, mod_range=opts.mod_range, c_encoding=opts.c_encoding,
                                       embed_lr_multiplier=opts.embed_lr_multiplier,
                                       embed_layers=opts.embed_layers, f_head=opts.f_head).items()
                 if v is not None}
    dataset = ImageDataset(opts.data, xflip=opts.mirror)
    preset = get_preset(opts.preset, **overrides)
    if dataset.resolution != preset.resolution:
        raise ValueError(f"the dataset is {dataset.resolution}x{dataset.resolution} but preset {opts.preset!r} "
                         f"generates {preset.resolution}x{preset.resolution}; prepare it with dataset_tool.py "
                         f"--resolution {preset.resolution}")
    torch.manual_seed(opts.seed)
    sg2_baseline = opts.baseline is not None and _baseline_kind(opts.baseline) == "sg2"
    baseline = _read_sg2_baseline(opts.baseline, preset, device) if sg2_baseline else None
    if baseline is not None:                 # F reconstructs the file's latents
        preset = dataclasses.replace(preset, z_dim=baseline["G_ema"].z_dim)
    nets = _build(opts, preset, device, plain_sg2=baseline)
    G, G_ema, D, F = (nets[k] for k in ("G", "G_ema", "D", "F"))
    n_bits = G.n_bits
    if opts.baseline is not None and not sg2_baseline:
        baseline = _read_baseline(opts.baseline, nets, device)
    from_snapshot = resume not in ("auto", "none")
    if isinstance(G, SG2FingerprintedGenerator):   # fine-tuning chooses what of G trains
        G.set_trainable(opts.train_params or "all")
    elif opts.train_params not in (None, "all") or opts.shared_lr is not None:
        what = f"--train-params {opts.train_params}" if opts.shared_lr is None else "--shared-lr"
        raise ValueError(f"{what} is for fine-tuning a standard StyleGAN2 (--init-from); this run's G "
                         f"({type(G).__name__}) trains all its parameters at --lr")
    if baseline is not None and not sg2_baseline:     # A fingerprinted run starting from a plain one's; this also
        _start_from_baseline(opts.baseline, baseline, nets)     # checks that the baseline fits when --resume PATH wins:
    if from_snapshot:                       # a new run starting from a snapshot's weights.
        _init_from_snapshot(resume, nets, device)

    lazy = {"G": opts.g_reg_interval, "D": opts.d_reg_interval}

    def adam(params, lr, beta1, interval):
        ratio = interval / (interval + 1) if interval else 1.0
        params = list(params)
        if params and isinstance(params[0], dict):     # groups: a group's lr is lr times its "lr_scale"
            params = [{"params": g["params"], **({"lr": lr * ratio * g["lr_scale"]} if "lr_scale" in g else {})}
                      for g in params]
        return torch.optim.Adam(params, lr=lr * ratio, betas=(beta1 ** ratio, 0.99 ** ratio), eps=1e-8)

    opt_G = adam(_g_param_groups(G, opts), opts.lr, 0.0, lazy["G"])
    opt_F = adam([p for p in F.parameters() if p.requires_grad], opts.f_lr or opts.lr, opts.f_beta1, lazy["G"])
    opt_D = adam(D.parameters(), opts.lr, 0.0, lazy["D"])
    fp_transform = FingerprintAugment.from_spec(opts.augment_fp) if opts.augment_fp else None
    paired = opts.consistency_noise == "paired"
    reference = None
    if opts.consistency_to == "baseline":
        if baseline is None:
            raise ValueError("--consistency-to baseline holds the images to the --baseline snapshot's: give --baseline")
        reference = _reference(baseline["G_ema"], device, opts.channels_last)
    if opts.compile:
        loss = FingerprintGANLoss(torch.compile(G), torch.compile(D), torch.compile(F), opts.weights, fp_transform,
                                  paired_noise=paired,
                                  reference=None if reference is None else torch.compile(reference),
                                  shared_change=opts.shared_change or 0.0)
    else:
        loss = FingerprintGANLoss(G, D, F, opts.weights, fp_transform, paired_noise=paired, reference=reference,
                                  shared_change=opts.shared_change or 0.0)

    # --- Fixed latents and fingerprints for the image grids -----------------------------------
    grid_gen = torch.Generator().manual_seed(seed_for(opts.seed, 123))
    gw, gh = 8, 4
    grid = {
        "z": torch.randn(gw * gh, G.z_dim, generator=grid_gen),
        "c": random_fingerprints(gw * gh, n_bits, grid_gen),
        "z_row": torch.randn(gh, G.z_dim, generator=grid_gen).repeat_interleave(gw, 0),
        "c_row": random_fingerprints(gh, n_bits, grid_gen).repeat_interleave(gw, 0),
    }

    def save_grids(tag: str) -> None:
        with torch.no_grad():
            def gen(z, c):
                return torch.cat([G_ema(zb.to(device), cb.to(device), noise_mode="const")
                                  for zb, cb in zip(z.split(16), c.split(16))])
            for name, z, c in (("arbitrary", grid["z"], grid["c"]),
                               ("latents-same", grid["z_row"], grid["c"]),        # Rows share z, vary c.
                               ("fingerprints-same", grid["z"], grid["c_row"])):  # Rows share c, vary z.
                images = gen(z, c)
                path = run.dir / f"fakes-{name}-{tag}.png"
                with writing(path):
                    save_image_grid(images, path, gw)

    # --- Run folder and resume ----------------------------------------------------------------
    # Everything that can fail without a run folder has been checked; a start that fails from here
    # on removes the run folder it created (and only that).
    counters = {"batch_idx": 0, "cur_nimg": 0, "cur_tick": 0, "tick_start_nimg": 0,
                "warm_nimg": -1 if opts.fp_warmup is not None and n_bits > 0 else 0}
    training_state = {"G": G, "G_ema": G_ema, "D": D, "F": F, "opt_G": opt_G, "opt_F": opt_F, "opt_D": opt_D,
                      "pl_mean": loss.pl_mean}
    run = Run(info, opts.outdir, _desc(opts, n_bits), opts.to_json(), counters, training_state,
              total_kimg=opts.total_kimg, tick_kimg=opts.tick_kimg, resume=resume == "auto", minutes=opts.minutes)
    log = run.log
    with run.starting():
        resumed = run.resume(map_location=device)
        if not resumed:
            if from_snapshot:
                log(f"Initialised G, G_ema, D and F from {resume}"
                    + ("" if baseline is None else f"; the consistency reference from {opts.baseline}"))
            elif sg2_baseline:
                log(f"Fine-tuning the standard StyleGAN2 {opts.baseline}: G from its G_ema with the fingerprint "
                    f"module at the identity, D from its D, "
                    f"{'F from the decoder of ' + opts.fp_decoder if opts.fp_decoder else 'a new F'}; training G's "
                    f"{opts.train_params or 'all'} parameters"
                    + ("" if opts.shared_lr is None else f", those every user shares at lr {opts.shared_lr:g}"))
            elif baseline is not None:
                log(f"Started from the plain run's snapshot {opts.baseline}: the fingerprint modulation at the "
                    "identity")
            log(f"Starting {run.dir}")
        data_iter = endless_batches(dataset, opts.batch, opts.seed, counters["batch_idx"], opts.workers, device)
        if info.is_main and not resumed:
            reals = torch.stack([dataset[i][0] for i in range(min(gw * gh, len(dataset)))])
            with writing(run.dir / "reals.png"):
                save_image_grid(reals.float() / 127.5 - 1, run.dir / "reals.png", gw)
            save_grids("init")

    # What each phase trains: G_main updates G and F together; the regularisers only their own network.
    phase_modules = {"G_main": [(G, opt_G), (F, opt_F)], "G_reg": [(G, opt_G)], "D_main": [(D, opt_D)],
                     "D_reg": [(D, opt_D)]}

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.amp)

    def schedule_scale() -> dict[str, float]:
        terms = opts.fp_warmup_terms
        if counters["warm_nimg"] < 0:          # Fingerprint warm-up: these terms are off.
            return dict.fromkeys(terms, 0.0)
        ramp = opts.fp_ramp_kimg * 1000
        if opts.fp_warmup is None or n_bits == 0 or ramp <= 0:    # a plain run has no fingerprint to wait for
            return dict.fromkeys(terms, 1.0)
        return dict.fromkeys(terms, min((counters["cur_nimg"] - counters["warm_nimg"]) / ramp, 1.0))

    # --- Main loop ----------------------------------------------------------------------------
    while not run.done:
        step = counters["batch_idx"]
        images, _ = next(data_iter)
        scale = schedule_scale()
        step_stats: dict[str, torch.Tensor] = {}

        phases = [("G_main", 1), ("G_reg", lazy["G"]), ("D_main", 1), ("D_reg", lazy["D"])]
        for p_idx, (phase, interval) in enumerate(phases):
            if interval == 0 or step % interval != 0:
                continue
            if phase == "G_reg" and (opts.weights.pl_weight == 0):
                continue
            if phase.startswith("D_") and opts.weights.adversarial == 0:
                continue   # No adversarial term: D would learn for nothing.
            if counters["warm_nimg"] < 0 and "adversarial" in opts.fp_warmup_terms and phase != "G_main":
                continue   # Warm-up without the adversarial term: G and F only; D and the regularisers wait.
            params = [p for module, _ in phase_modules[phase] for p in module.parameters()]
            for p in params:
                p.grad = None
            sums: dict[str, torch.Tensor] = {}
            for r in range(rounds):
                g_round = info.rank * rounds + r        # Index of this round in the global batch.
                torch.manual_seed(seed_for(opts.seed, step, p_idx, g_round))
                z = torch.randn(batch_gpu, G.z_dim, device=device)
                c = random_fingerprints(batch_gpu, n_bits, device=device)
                c2 = random_fingerprints(batch_gpu, n_bits, device=device)
                real = _real_batch(images[g_round * batch_gpu:(g_round + 1) * batch_gpu], device)
                with autocast:
                    if phase == "G_main":
                        value, stats = loss.generator_main(z, c, c2, scale)
                    elif phase == "G_reg":
                        value, stats = loss.generator_pl(z, c)
                        value = value * interval
                    elif phase == "D_main":
                        value, stats = loss.discriminator_main(real, z, c)
                    else:
                        value, stats = loss.discriminator_r1(real)
                        value = value * interval
                (value * (batch_gpu / opts.batch)).backward()
                for k, v in stats.items():
                    sums[k] = sums.get(k, torch.zeros([], device=device)) + v.float() * (batch_gpu / opts.batch)
            dist_utils.all_reduce_grads_(params, info)
            sanitize_grads_(params)
            for _, opt in phase_modules[phase]:
                opt.step()
            keys = sorted(sums)
            vals = [sums[k] for k in keys]
            dist_utils.all_reduce_sum_(vals, info)
            step_stats.update(dict(zip(keys, vals)))
            if phase == "G_reg":
                loss.update_pl_mean(step_stats["Loss/G/pl_length"])

        # G_ema, counters, warm-up switch.
        update_ema(G_ema, G, ema_beta(opts.batch, opts.ema_kimg, counters["cur_nimg"], opts.ema_rampup))
        counters["cur_nimg"] += opts.batch
        counters["batch_idx"] += 1
        acc = step_stats.get("Metrics/bit_acc")
        if counters["warm_nimg"] < 0 and acc is not None and float(acc) > opts.fp_warmup:
            counters["warm_nimg"] = counters["cur_nimg"]
            log(f"Fingerprint warm-up passed (batch bit accuracy {float(acc):.3f} > {opts.fp_warmup}) at "
                f"{counters['cur_nimg'] / 1000:.1f} kimg: ramping {', '.join(opts.fp_warmup_terms)} in over "
                f"{opts.fp_ramp_kimg} kimg")
        run.accumulate(step_stats)
        run.accumulate({f"Schedule/{k}": v for k, v in scale.items()})
        if not run.tick_due():
            continue

        # --- Tick: report, snapshot, state ---------------------------------------------------
        row = run.end_tick(resources={"Resources/cuda_max_alloc_gb": cuda_max_alloc_gb(device)})
        kimg = row["Progress/kimg"]
        shown = {"bit_acc": "Metrics/bit_acc", "G": "Loss/G/total", "D": "Loss/D/adversarial"}
        run.report(row, " ".join(f"{name} {row[key]:.3f}" for name, key in shown.items() if key in row))
        if n_bits > 0 and kimg >= opts.guard_kimg and row.get("Metrics/bit_acc", 1.0) < 0.55:
            run.warn_once(f"F's bit accuracy is {row['Metrics/bit_acc']:.3f} after {kimg:.0f} kimg: "
                          "the fingerprint is not being learned (a known failure of fingerprinting releases).\n"
                          "Try what worked on CPU (docs/RESULTS.md): --cfg cpu32, or --cfg cpu128 for 128 bits "
                          "(training/configs.py lists their values); or fewer bits (--watermark-size).")
        if run.snapshot_due(opts.snap):
            snap_path = run.save_snapshot("network", save_grids, G=G, G_ema=G_ema, D=D, F=F)
            metric_opts = metric_main.MetricOptions(G=G_ema, F=F, data=opts.data, device=device,
                                                    seed=opts.seed, inception=opts.inception)
            for name in opts.metrics:
                if n_bits > 0 or not metric_main.fingerprint_only(name):     # a plain run: quality only
                    run.report_metric(metric_main.calc_metric(name, metric_opts), snap_path)
            run.plot_metrics()
        run.save_state()
    return run.finish()
