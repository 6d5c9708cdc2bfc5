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
from .provenance import code_version, provenance_record, write_json
from .runtime import configure_runtime

STATE_FILE = "trainer_state.json"


def augment(batch: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float in [0, 1] with dihedral flips/rotations and mild brightness/colour jitter."""
    x = batch.float() / 255.0
    b = x.shape[0]
    if cfg.flips:
        flip = torch.rand(b, generator=gen) < 0.5
        x[flip] = x[flip].flip(-1)
    if cfg.rotations:
        k = torch.randint(0, 4, (b,), generator=gen)
        for r in (1, 2, 3):
            sel = k == r
            if sel.any():
                x[sel] = torch.rot90(x[sel], r, (2, 3))
    if cfg.color_jitter > 0:
        j = cfg.color_jitter
        bright = 1 + j * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
        gain = 1 + 0.5 * j * (2 * torch.rand(b, 3, 1, 1, generator=gen) - 1)
        x = (x * bright * gain).clamp(0, 1)
    return x


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


def train(cfg: TrainConfig, data: ImageArrays, out_dir: str | Path, resume: bool = False,
          init_from: str | Path | None = None, max_minutes: float | None = None, progress: bool = True,
          data_source: str | None = None) -> CytoModel:
    """Train (or continue training) a CytoModel on ``data``; returns the EMA model, also saved in ``out/model``."""
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel

    cfg.validate()
    configure_runtime(cfg.threads)
    out = Path(out_dir)
    ckpt_root = out / "checkpoints"
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    device = accelerator.device
    torch.manual_seed(cfg.seed)

    if data.images.shape[1] != cfg.resolution:
        raise ValueError(f"data are {data.images.shape[1]}px but the config says resolution={cfg.resolution}")
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    if (counts == 0).any():
        empty = [c for c, n in zip(data.class_names, counts) if n == 0]
        raise ValueError(f"class(es) {empty} have no training images")

    state: dict[str, Any] = {"step": 0, "wall_seconds": 0.0}
    latest = _latest_checkpoint(ckpt_root) if resume else None
    if resume and latest is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {ckpt_root}; start without --resume")
    if latest is not None:
        state = json.loads((latest / STATE_FILE).read_text())
        if state.get("data_hash") != data.data_hash:
            raise ValueError(f"checkpoint {latest} was trained on other data (hash {state.get('data_hash')}, "
                             f"now {data.data_hash}); use a new --out folder")
        mean, std = state["pixel_mean"], state["pixel_std"]
    else:
        mean, std = pixel_statistics(data.images)

    unet = build_unet(cfg, len(data.class_names))
    if init_from is not None and latest is None:
        warm = CytoModel.from_pretrained(init_from)
        if warm.class_names != data.class_names or warm.resolution != cfg.resolution:
            raise ValueError(f"--init-from {init_from}: classes/resolution differ from this run")
        unet.load_state_dict(warm.unet.state_dict())
        mean, std = warm.pixel_mean, warm.pixel_std
        state["step"] = int(warm.metadata.get("train_steps", 0))
        state["wall_seconds"] = float(warm.metadata.get("wall_seconds", 0.0))
    scheduler = build_scheduler(cfg)
    model = CytoModel(unet, scheduler, list(data.class_names), cfg.resolution, mean, std, cfg.crop_fraction)

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
    elif init_from is not None:
        ema.optimization_step = state["step"]

    images = torch.from_numpy(np.ascontiguousarray(data.images.transpose(0, 3, 1, 2))).to(device)
    labels = torch.from_numpy(data.labels).to(device)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    alphas = scheduler.alphas_cumprod.to(device)
    n_img = len(images)
    meta = dict(name=f"cytomodel-{cfg.preset}", preset=cfg.preset, config=cfg.to_dict(), data_hash=data.data_hash,
                data_source=data_source, class_counts=dict(zip(data.class_names, counts.tolist())))

    out.mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    log_path = out / "train_log.csv"
    new_log = not log_path.exists()
    log_fh = open(log_path, "a", newline="")
    log = csv.writer(log_fh)
    if new_log:
        log.writerow(["step", "loss", "lr", "images_per_s", "wall_seconds"])

    def save(step: int) -> None:
        if not accelerator.is_main_process:
            return
        tmp = ckpt_root / f"tmp-{step:07d}"
        final = ckpt_root / f"step-{step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        accelerator.save_state(str(tmp))
        write_json(tmp / STATE_FILE, {**state, "step": step, "data_hash": data.data_hash, "pixel_mean": mean,
                                      "pixel_std": std, "config": cfg.to_dict(), "code_version": code_version()})
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(ckpt_root.glob("step-*"))[:-cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        export_ema(step)

    def export_ema(step: int) -> CytoModel:
        raw = accelerator.unwrap_model(unet)
        ema.store(raw.parameters())
        ema.copy_to(raw.parameters())
        model.unet = raw
        model.save_pretrained(out / "model", extra={**meta, **provenance_record(), "train_steps": step,
                                                     "wall_seconds": round(state["wall_seconds"], 1)})
        ema.restore(raw.parameters())
        return model

    def sample_grid(step: int) -> None:
        if not accelerator.is_main_process:
            return
        from .generation import image_grid, sample
        raw = accelerator.unwrap_model(unet)
        ema.store(raw.parameters())
        ema.copy_to(raw.parameters())
        model.unet = raw
        k = 8
        cls = [c for c in range(len(data.class_names)) for _ in range(k)]
        imgs = sample(model, cls, list(range(len(cls))), guidance=2.0, steps=25,
                      precision="bf16" if cfg.mixed_precision == "bf16" else "fp32")
        image_grid(imgs, rows=len(data.class_names), upscale=2).save(out / "samples" / f"step-{step:07d}.png")
        ema.restore(raw.parameters())
        raw.train()

    step = int(state["step"])
    if step >= cfg.max_steps:
        accelerator.print(f"already at step {step} >= max_steps={cfg.max_steps}; raise max_steps to continue")
        log_fh.close()
        saved = out / "model" / "cytomodel.json"
        if saved.is_file() and json.loads(saved.read_text()).get("train_steps") == step:
            # leave the exported model untouched: results cached against it (e.g. by `evaluate`) stay valid
            return CytoModel.from_pretrained(out / "model")
        return export_ema(step)
    bar = None
    if progress and accelerator.is_local_main_process:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.max_steps, initial=step, desc=f"train {cfg.preset}", unit="step", dynamic_ncols=True)
    unet.train()
    t_start = time.time()
    t_window, loss_window, seen_window = time.time(), 0.0, 0
    deadline = None if max_minutes is None else t_start + 60 * max_minutes
    with _StopFlag() as stopper:
        while step < cfg.max_steps:
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97 + accelerator.process_index)
            idx = torch.randint(0, n_img, (cfg.batch_size,), generator=gen)
            x0 = augment(images[idx].cpu(), cfg, gen).to(device)
            x0 = (x0 - mean_t) / std_t * 0.5
            y = labels[idx].clone()
            drop = torch.rand(cfg.batch_size, generator=gen).to(device) < cfg.class_dropout
            y[drop] = len(data.class_names)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            t = torch.randint(0, cfg.num_train_timesteps, (cfg.batch_size,), generator=gen).to(device)
            xt = scheduler.add_noise(x0, noise, t)
            with accelerator.autocast():
                pred = unet(xt, t, class_labels=y).sample
            mse = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
            loss = (mse * min_snr_weights(alphas, t, cfg.min_snr_gamma)).mean()
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.grad_clip:
                accelerator.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
            optimizer.step()
            lr_sched.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(accelerator.unwrap_model(unet).parameters())
            step += 1
            loss_window += loss.item()
            seen_window += cfg.batch_size * accelerator.num_processes
            if bar is not None:
                bar.update(1)
            if step % 50 == 0 or step == cfg.max_steps:
                now = time.time()
                ips = seen_window / max(now - t_window, 1e-9)
                state["wall_seconds"] += now - t_window
                avg = loss_window / max(1, seen_window // (cfg.batch_size * accelerator.num_processes))
                if accelerator.is_main_process:
                    log.writerow([step, f"{avg:.5f}", f"{lr_sched.get_last_lr()[0]:.3g}", f"{ips:.1f}",
                                  f"{state['wall_seconds']:.0f}"])
                    log_fh.flush()
                if bar is not None:
                    bar.set_postfix(loss=f"{avg:.4f}", img_s=f"{ips:.0f}")
                t_window, loss_window, seen_window = now, 0.0, 0
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
    log_fh.close()
    accelerator.wait_for_everyone()
    return CytoModel.from_pretrained(out / "model")


def _latest_checkpoint(root: Path) -> Path | None:
    found = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file())
    return found[-1] if found else None
