"""Training loop: ε-prediction with Min-SNR-γ weighting, classifier-free class dropout, EMA weights, batched
in-memory augmentation, bf16 autocast, accelerate for devices, and resumable checkpoints.

The whole preprocessed training set lives in memory as uint8 (12k PBC cells at 32 px are 37 MB), so a step costs a
UNet forward/backward and nothing else.
"""
from __future__ import annotations

import csv
import json
import math
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import TrainConfig
from .data import ImageArrays
from .model import CytoModel, build_scheduler, build_unet, pixel_statistics
from cytocore.provenance import code_version, provenance_record, write_json
from .runtime import configure_runtime

STATE_FILE = "trainer_state.json"


def augment(batch: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float in [0, 1] with dihedral flips/rotations and mild brightness/colour jitter."""
    return augment_views([batch], cfg, gen)[0]


def augment_views(batches: list[torch.Tensor], cfg: TrainConfig, gen: torch.Generator) -> list[torch.Tensor]:
    """The same random flips/rotations/jitter applied to several views of one batch (e.g. 128 px and its 32 px)."""
    xs = [b.float() / 255.0 for b in batches]
    b = xs[0].shape[0]
    if cfg.flips:
        flip = torch.rand(b, generator=gen) < 0.5
        for x in xs:
            x[flip] = x[flip].flip(-1)
    if cfg.rotations:
        k = torch.randint(0, 4, (b,), generator=gen)
        for r in (1, 2, 3):
            sel = k == r
            if sel.any():
                for x in xs:
                    x[sel] = torch.rot90(x[sel], r, (2, 3))
    if cfg.color_jitter > 0:
        j = cfg.color_jitter
        bright = 1 + j * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
        gain = 1 + 0.5 * j * (2 * torch.rand(b, 3, 1, 1, generator=gen) - 1)
        xs = [(x * bright * gain).clamp(0, 1) for x in xs]
    return xs


def min_snr_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float | None) -> torch.Tensor:
    """Min-SNR-γ loss weights for ε-prediction (Hang et al. 2023): min(SNR, γ) / SNR."""
    if gamma is None:
        return torch.ones_like(t, dtype=torch.float32)
    a = alphas_cumprod[t].float()
    snr = a / (1 - a)
    return torch.clamp(snr, max=gamma) / snr


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.lr_warmup_steps:
            return (step + 1) / cfg.lr_warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        p = min(1.0, (step - cfg.lr_warmup_steps) / max(1, cfg.max_steps - cfg.lr_warmup_steps))
        return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    return f


class _StopFlag:
    """SIGTERM/SIGINT ask the loop to checkpoint and stop, instead of dying mid-step."""

    def __init__(self) -> None:
        self.stop = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not in the main thread
                pass
        return self

    def _handler(self, *_):
        self.stop = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class BaseObjective:
    """One step's loss for the base stage: ε-MSE of the class-conditional UNet on augmented, noised images."""

    def __init__(self, cfg: TrainConfig, data: ImageArrays, scheduler, mean, std, device) -> None:
        self.cfg, self.data, self.scheduler, self.device = cfg, data, scheduler, device
        self.mean, self.std = mean, std
        self.images = torch.from_numpy(np.ascontiguousarray(data.images.transpose(0, 3, 1, 2))).to(device)
        self.labels = torch.from_numpy(data.labels).to(device)
        self.mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.alphas = scheduler.alphas_cumprod.to(device)
        self.null = len(data.class_names)

    def state(self) -> dict[str, Any]:
        """What a checkpoint must record to rebuild this objective exactly."""
        return {}

    def build_unet(self):
        return build_unet(self.cfg, len(self.data.class_names))

    def model(self, unet) -> CytoModel:
        return CytoModel(unet, self.scheduler, list(self.data.class_names), self.cfg.resolution, self.mean,
                         self.std, self.cfg.crop_fraction)

    def _to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.device) - self.mean_t) / self.std_t * 0.5

    def _drop_classes(self, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        drop = torch.rand(len(y), generator=gen).to(self.device) < self.cfg.class_dropout
        y[drop] = self.null
        return y

    def _weighted_eps_loss(self, pred, noise, t) -> torch.Tensor:
        mse = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        return (mse * min_snr_weights(self.alphas, t, self.cfg.min_snr_gamma)).mean()

    def loss(self, unet, gen: torch.Generator, autocast) -> torch.Tensor:
        cfg = self.cfg
        idx = torch.randint(0, len(self.images), (cfg.batch_size,), generator=gen)
        x0 = self._to_model_space(augment(self.images[idx].cpu(), cfg, gen))
        y = self._drop_classes(self.labels[idx].clone(), gen)
        noise = torch.randn(x0.shape, generator=gen).to(self.device)
        t = torch.randint(0, cfg.num_train_timesteps, (cfg.batch_size,), generator=gen).to(self.device)
        xt = self.scheduler.add_noise(x0, noise, t)
        with autocast():
            pred = unet(xt, t, class_labels=y).sample
        return self._weighted_eps_loss(pred, noise, t)

    def sample_grid(self, model: CytoModel, path: Path, precision: str) -> None:
        from .generation import image_grid, sample
        k = 8
        cls = [c for c in range(len(self.data.class_names)) for _ in range(k)]
        imgs = sample(model, cls, list(range(len(cls))), guidance=2.0, steps=25, precision=precision)
        image_grid(imgs, rows=len(self.data.class_names), upscale=2).save(path)


class SuperResObjective(BaseObjective):
    """One step's loss for the super-resolution stage: ε-MSE on random crops of the noised residual, given the
    upsampled low-res image after conditioning augmentation (see :mod:`cytomodel.superres`)."""

    def __init__(self, cfg: TrainConfig, data: ImageArrays, scheduler, mean, std, device,
                 residual_scale: float | None = None) -> None:
        from .superres import downsample, residual_scale_of

        super().__init__(cfg, data, scheduler, mean, std, device)
        low = downsample(data.images, cfg.low_resolution)
        self.low = torch.from_numpy(np.ascontiguousarray(low.transpose(0, 3, 1, 2))).to(device)
        if residual_scale is None:
            probe = slice(0, min(1024, len(self.images)))
            residual_scale = residual_scale_of(self._to_model_space(self.images[probe].float() / 255),
                                               self._to_model_space(self.low[probe].float() / 255))
        self.residual_scale = float(residual_scale)

    def state(self) -> dict[str, Any]:
        return {"residual_scale": self.residual_scale}

    def build_unet(self):
        from .superres import build_superres_unet
        return build_superres_unet(self.cfg, len(self.data.class_names))

    def model(self, unet):
        from .superres import SuperResModel
        c = self.cfg
        return SuperResModel(unet, self.scheduler, list(self.data.class_names), c.resolution, self.mean, self.std,
                             c.crop_fraction, low_resolution=c.low_resolution, residual_scale=self.residual_scale,
                             cond_noise_max=c.cond_noise_max, cond_noise_sample=c.cond_noise_sample)

    def loss(self, unet, gen: torch.Generator, autocast) -> torch.Tensor:
        cfg, b = self.cfg, self.cfg.batch_size
        stage = self.model(unet)
        idx = torch.randint(0, len(self.images), (b,), generator=gen)
        high, low = (self._to_model_space(v) for v in augment_views([self.images[idx].cpu(), self.low[idx].cpu()],
                                                                    cfg, gen))
        level = (torch.rand(b, generator=gen) * cfg.cond_noise_max).to(self.device)
        cond = stage.condition(low, level, torch.randn(low.shape, generator=gen).to(self.device))
        x0 = stage.to_residual(high, low)
        x0, cond = _random_crops([x0, cond], cfg.crop_size or cfg.resolution, gen)
        y = self._drop_classes(self.labels[idx].clone(), gen)
        noise = torch.randn(x0.shape, generator=gen).to(self.device)
        t = torch.randint(0, cfg.num_train_timesteps, (b,), generator=gen).to(self.device)
        xt = self.scheduler.add_noise(x0, noise, t)
        with autocast():
            pred = unet(torch.cat([xt, cond], dim=1), t, class_labels=y).sample
        return self._weighted_eps_loss(pred, noise, t)

    def sample_grid(self, model, path: Path, precision: str) -> None:
        """Rows of (bicubic upsampling | super-resolved | real) for 4 fixed training cells per class."""
        from .generation import image_grid
        from .superres import super_resolve
        k = 4
        pick = np.concatenate([np.flatnonzero(self.data.labels == c)[:k] for c in range(len(self.data.class_names))])
        low = self.low[pick].permute(0, 2, 3, 1).cpu().numpy()
        out = super_resolve(model, low, self.data.labels[pick].tolist(), pick.tolist(), steps=25,
                            precision=precision)
        bicubic = model.decode(model.from_residual(torch.zeros(len(pick), 3, model.resolution, model.resolution),
                                                   model.encode(low)))
        tiles = np.concatenate([np.stack([a, b, c]) for a, b, c in zip(bicubic, out, self.data.images[pick])])
        image_grid(tiles, rows=len(self.data.class_names)).save(path)


def _random_crops(views: list[torch.Tensor], size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """The same random ``size`` x ``size`` window of each sample in every view (views share H and W)."""
    b, _, h, w = views[0].shape
    if size >= h and size >= w:
        return views
    top = torch.randint(0, h - size + 1, (b,), generator=gen).tolist()
    left = torch.randint(0, w - size + 1, (b,), generator=gen).tolist()
    return [torch.stack([v[i, :, y:y + size, x:x + size] for i, (y, x) in enumerate(zip(top, left))])
            for v in views]


OBJECTIVES = {"base": BaseObjective, "superres": SuperResObjective}


def train(cfg: TrainConfig, data: ImageArrays, out_dir: str | Path, resume: bool = False,
          init_from: str | Path | None = None, max_minutes: float | None = None, progress: bool = True,
          data_source: str | None = None) -> CytoModel:
    """Train (or continue training) a stage of ``cfg.stage`` on ``data``; returns the EMA model, also saved in
    ``out/model``. A super-resolution stage takes ``data`` at its output resolution and makes the low-res inputs
    itself (:func:`cytomodel.superres.downsample`), exactly as a cascade makes them from a real image."""
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel

    cfg.validate()
    configure_runtime(cfg.threads)
    out = Path(out_dir)
    ckpt_root = out / "checkpoints"
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    device = accelerator.device
    torch.manual_seed(cfg.seed)
    counts = _check_training_data(cfg, data)

    state: dict[str, Any] = {"step": 0, "wall_seconds": 0.0}
    latest = _latest_checkpoint(ckpt_root) if resume else None
    if resume and latest is None:
        raise FileNotFoundError(f"resume: no checkpoint in {ckpt_root}; start without resuming")
    if latest is not None:
        state = json.loads((latest / STATE_FILE).read_text())
        if state.get("data_hash") != data.data_hash:
            raise ValueError(f"checkpoint {latest} was trained on other data (hash {state.get('data_hash')}, "
                             f"now {data.data_hash}); use a new output folder")
        if state.get("config", {}).get("stage", "base") != cfg.stage:
            raise ValueError(f"checkpoint {latest} trains a {state['config'].get('stage', 'base')} stage, not "
                             f"{cfg.stage}; use the preset it was started with or a new output folder")
        mean, std = state["pixel_mean"], state["pixel_std"]
    else:
        mean, std = pixel_statistics(data.images)

    warm = _warm_start(init_from, cfg, data) if init_from is not None and latest is None else None
    if warm is not None:
        mean, std = warm.pixel_mean, warm.pixel_std
        state["step"] = int(warm.metadata.get("train_steps", 0))
        state["wall_seconds"] = float(warm.metadata.get("wall_seconds", 0.0))
    scheduler = build_scheduler(cfg)
    saved_objective = state.get("objective", {})
    if warm is not None and cfg.stage == "superres":
        saved_objective = {"residual_scale": warm.residual_scale}
    objective = OBJECTIVES[cfg.stage](cfg, data, scheduler, mean, std, device, **saved_objective)
    unet = objective.build_unet()
    if warm is not None:
        unet.load_state_dict(warm.unet.state_dict())

    ema = EMAModel(unet.parameters(), decay=cfg.ema_max_decay, use_ema_warmup=True, inv_gamma=1.0,
                   power=cfg.ema_power, update_after_step=cfg.ema_start_step)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.learning_rate, betas=(0.9, cfg.adam_beta2),
                                  weight_decay=cfg.weight_decay)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    unet, optimizer, lr_sched = accelerator.prepare(unet, optimizer, lr_sched)
    accelerator.register_for_checkpointing(ema)
    if latest is not None:
        accelerator.load_state(str(latest))
        accelerator.print(f"resumed from {latest} at step {state['step']}")
    elif warm is not None:
        ema.optimization_step = state["step"]

    meta = dict(name=f"cytomodel-{cfg.preset}", preset=cfg.preset, config=cfg.to_dict(), data_hash=data.data_hash,
                data_source=data_source, class_counts=dict(zip(data.class_names, counts.tolist())))
    precision = "bf16" if cfg.mixed_precision == "bf16" else "fp32"

    def with_ema(fn):
        """Run ``fn(model)`` with the EMA weights swapped into the network, then swap the live weights back."""
        raw = accelerator.unwrap_model(unet)
        ema.store(raw.parameters())
        ema.copy_to(raw.parameters())
        try:
            return fn(objective.model(raw))
        finally:
            ema.restore(raw.parameters())
            raw.train()

    def export_ema(step: int) -> CytoModel:
        def write(model: CytoModel) -> CytoModel:
            model.save_pretrained(out / "model", extra={**meta, **provenance_record(), "train_steps": step,
                                                        "wall_seconds": round(state["wall_seconds"], 1)})
            return model
        return with_ema(write)

    def save(step: int) -> None:
        if not accelerator.is_main_process:
            return
        _save_checkpoint(accelerator, ckpt_root, step, cfg.keep_checkpoints, {
            **state, "step": step, "data_hash": data.data_hash, "pixel_mean": mean, "pixel_std": std,
            "objective": objective.state(), "config": cfg.to_dict(), "code_version": code_version()})
        export_ema(step)

    def sample_grid(step: int) -> None:
        if accelerator.is_main_process:
            with_ema(lambda m: objective.sample_grid(m, out / "samples" / f"step-{step:07d}.png", precision))

    step = int(state["step"])
    if step >= cfg.max_steps:
        accelerator.print(f"already at step {step} >= max_steps={cfg.max_steps}; raise max_steps to continue")
        saved = out / "model" / "cytomodel.json"
        if saved.is_file() and json.loads(saved.read_text()).get("train_steps") == step:
            # leave the exported model untouched: results cached against it (e.g. by `evaluate`) stay valid
            return CytoModel.from_pretrained(out / "model")
        out.mkdir(parents=True, exist_ok=True)
        return export_ema(step)

    out.mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    log = _TrainLog(out / "train_log.csv", cfg.batch_size * accelerator.num_processes,
                    accelerator.is_main_process)
    bar = None
    if progress and accelerator.is_local_main_process:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.max_steps, initial=step, desc=f"train {cfg.preset}", unit="step", dynamic_ncols=True)
    unet.train()
    deadline = None if max_minutes is None else time.time() + 60 * max_minutes
    with _StopFlag() as stopper, log:
        while step < cfg.max_steps:
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97 + accelerator.process_index)
            loss = objective.loss(unet, gen, accelerator.autocast)
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.grad_clip:
                accelerator.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
            optimizer.step()
            lr_sched.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(accelerator.unwrap_model(unet).parameters())
            step += 1
            log.add(loss.item())
            if bar is not None:
                bar.update(1)
            if step % 50 == 0 or step == cfg.max_steps:
                avg, ips, seconds = log.window()
                state["wall_seconds"] += seconds
                log.write(step, avg, lr_sched.get_last_lr()[0], ips, state["wall_seconds"])
                if bar is not None:
                    bar.set_postfix(loss=f"{avg:.4f}", img_s=f"{ips:.0f}")
            stop = stopper.stop or (deadline is not None and time.time() > deadline)
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or stop:
                state["step"] = step
                save(step)
            if step % cfg.sample_every == 0:
                sample_grid(step)
            if stop:
                accelerator.print(f"stopping at step {step} (checkpoint saved); continue with --resume")
                break
    if bar is not None:
        bar.close()
    accelerator.wait_for_everyone()
    return CytoModel.from_pretrained(out / "model")


def _check_training_data(cfg: TrainConfig, data: ImageArrays) -> np.ndarray:
    if data.images.shape[1] != cfg.resolution:
        raise ValueError(f"data are {data.images.shape[1]}px but the config says resolution={cfg.resolution}")
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    if (counts == 0).any():
        empty = [c for c, n in zip(data.class_names, counts) if n == 0]
        raise ValueError(f"class(es) {empty} have no training images")
    return counts


def _warm_start(init_from: str | Path, cfg: TrainConfig, data: ImageArrays) -> CytoModel:
    warm = CytoModel.from_pretrained(init_from)
    if warm.class_names != data.class_names or warm.resolution != cfg.resolution or warm.STAGE != cfg.stage:
        raise ValueError(f"init_from={init_from}: classes/resolution/stage differ from this run "
                         f"({warm.STAGE}, {warm.resolution}px vs {cfg.stage}, {cfg.resolution}px)")
    return warm


def _save_checkpoint(accelerator, root: Path, step: int, keep: int, trainer_state: dict[str, Any]) -> None:
    """Write the checkpoint under a temporary name and rename it, so an interrupted save leaves the last one."""
    tmp = root / f"tmp-{step:07d}"
    final = root / f"step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    accelerator.save_state(str(tmp))
    write_json(tmp / STATE_FILE, trainer_state)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


class _TrainLog:
    """``train_log.csv``: mean loss, learning rate and images/s over each window of steps."""

    def __init__(self, path: Path, images_per_step: int, enabled: bool) -> None:
        self.images_per_step, self.enabled = images_per_step, enabled
        new = not path.exists()
        self.fh = open(path, "a", newline="")
        self.csv = csv.writer(self.fh)
        if new:
            self.csv.writerow(["step", "loss", "lr", "images_per_s", "wall_seconds"])
        self._reset()

    def _reset(self) -> None:
        self.t0, self.loss_sum, self.steps = time.time(), 0.0, 0

    def add(self, loss: float) -> None:
        self.loss_sum += loss
        self.steps += 1

    def window(self) -> tuple[float, float, float]:
        """Mean loss, images/s and seconds of the steps since the last call; starts a new window."""
        seconds = max(time.time() - self.t0, 1e-9)
        avg = self.loss_sum / max(1, self.steps)
        ips = self.steps * self.images_per_step / seconds
        self._reset()
        return avg, ips, seconds

    def write(self, step: int, loss: float, lr: float, images_per_s: float, wall_seconds: float) -> None:
        if self.enabled:
            self.csv.writerow([step, f"{loss:.5f}", f"{lr:.3g}", f"{images_per_s:.1f}", f"{wall_seconds:.0f}"])
            self.fh.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def _latest_checkpoint(root: Path) -> Path | None:
    found = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file())
    return found[-1] if found else None
