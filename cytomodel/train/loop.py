"""Training loop: ε-prediction with Min-SNR-γ weighting, classifier-free class dropout, EMA weights, batched
in-memory augmentation, bf16 autocast, accelerate for devices, and resumable checkpoints.

The whole preprocessed training set lives in memory as uint8 (12k PBC cells at 32 px are 37 MB), so a step costs a
UNet forward/backward and nothing else. The objectives (what a step optimises) are in :mod:`.objectives`, the
augmentation in :mod:`.augmentation` and :mod:`.lab_augmentation`; :func:`train` is a short sequence of named steps
of one ``_Session``.
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
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from cytocore.provenance import code_version, provenance_record, write_json

from ..data import ImageArrays
from ..models.base import CytoModel, build_scheduler, pixel_statistics
from ..models.loading import load_model
from ..runtime import configure_runtime
from .config import TrainConfig
from .objectives import OBJECTIVES

STATE_FILE = "trainer_state.json"


def _lr_lambda(cfg: TrainConfig, start: int = 0):
    """Warm-up, then cosine to ``lr_min_ratio`` at ``max_steps``. ``step`` counts this run's optimiser steps (the
    schedule's own counter); a fine-tune from weights at step ``start`` anneals over its ``max_steps - start``."""
    def f(step: int) -> float:
        if step < cfg.lr_warmup_steps:
            return (step + 1) / cfg.lr_warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        span = max(1, cfg.max_steps - start - cfg.lr_warmup_steps)
        p = min(1.0, (step - cfg.lr_warmup_steps) / span)
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
    """Train (or continue training) a stage of ``cfg.stage`` on ``data``; returns the EMA model, also saved in
    ``out/model``. A super-resolution stage takes ``data`` at its output resolution and makes the low-res inputs
    itself (:func:`cytomodel.models.superres.downsample`), exactly as a cascade makes them from a real image."""
    cfg.validate()
    configure_runtime(cfg.threads)
    run = _Session(cfg, data, Path(out_dir), data_source)
    run.restore(resume, init_from)
    run.build()
    if run.step >= cfg.max_steps:
        return run.already_done()
    run.loop(progress, max_minutes)
    run.accelerator.wait_for_everyone()
    return load_model(run.out / "model")


class _Session:
    """One call of :func:`train`: the accelerator, the trainer state and, after :meth:`build`, the network, its EMA,
    optimiser and schedule. Each step of ``train`` is one method."""

    def __init__(self, cfg: TrainConfig, data: ImageArrays, out: Path, data_source: str | None) -> None:
        self.cfg, self.data, self.out, self.data_source = cfg, data, out, data_source
        self.ckpt_root = out / "checkpoints"
        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
        self.device = self.accelerator.device
        torch.manual_seed(cfg.seed)
        self.counts = _check_training_data(cfg, data)
        self.state: dict[str, Any] = {"step": 0, "wall_seconds": 0.0}
        self.latest: Path | None = None
        self.warm: CytoModel | None = None
        self.precision = "bf16" if cfg.mixed_precision == "bf16" else "fp32"

    @property
    def step(self) -> int:
        return int(self.state["step"])

    # ------------------------------------------------------------------ step 1: where training starts from
    def restore(self, resume: bool, init_from: str | Path | None) -> None:
        """The latest checkpoint (``resume``) or a warm start (``init_from``), and the pixel statistics."""
        cfg, data = self.cfg, self.data
        self.latest = _latest_checkpoint(self.ckpt_root) if resume else None
        if resume and self.latest is None:
            raise FileNotFoundError(f"resume: no checkpoint in {self.ckpt_root}; start without resuming")
        if self.latest is not None:
            self.state = state = json.loads((self.latest / STATE_FILE).read_text())
            if state.get("data_hash") != data.data_hash:
                raise ValueError(f"checkpoint {self.latest} was trained on other data (hash "
                                 f"{state.get('data_hash')}, now {data.data_hash}); use a new output folder")
            if state.get("config", {}).get("stage", "base") != cfg.stage:
                raise ValueError(f"checkpoint {self.latest} trains a {state['config'].get('stage', 'base')} stage, "
                                 f"not {cfg.stage}; use the preset it was started with or a new output folder")
            self.mean, self.std = state["pixel_mean"], state["pixel_std"]
        else:
            self.mean, self.std = pixel_statistics(data.images)
        if init_from is not None and self.latest is None:
            self.warm = warm = _warm_start(init_from, cfg, data)
            self.mean, self.std = warm.pixel_mean, warm.pixel_std
            self.state["step"] = int(warm.metadata.get("train_steps", 0))
            self.state["wall_seconds"] = float(warm.metadata.get("wall_seconds", 0.0))
            self.state["fine_tune_from"] = {"path": str(init_from), "step": self.state["step"]}
            if warm.metadata.get("data_hash") == data.data_hash:   # the same training images: the same framing
                self.state["framing_records"] = {k: warm.metadata[k] for k in ("framing", "source_framing")
                                                 if warm.metadata.get(k)}

    # ------------------------------------------------------------------ step 2: network, EMA, optimiser
    def build(self) -> None:
        cfg, warm, accelerator = self.cfg, self.warm, self.accelerator
        scheduler = build_scheduler(cfg)
        saved_objective = self.state.get("objective", {})
        if warm is not None and cfg.stage == "superres":
            saved_objective = {"residual_scale": warm.residual_scale}
        self.objective = OBJECTIVES[cfg.stage](cfg, self.data, scheduler, self.mean, self.std, self.device,
                                               **saved_objective)
        unet = self.objective.build_unet()
        extra = self.objective.extra_modules()
        if warm is not None:
            unet.load_state_dict(warm.unet.state_dict())
            if warm.augmentation is not None and extra:
                extra[0].load_state_dict(warm.augmentation.state_dict())
        self.ema = EMAModel(self._parameters(unet), decay=cfg.ema_max_decay, use_ema_warmup=True, inv_gamma=1.0,
                            power=cfg.ema_power, update_after_step=cfg.ema_start_step)
        optimizer = torch.optim.AdamW(self._parameters(unet), lr=cfg.learning_rate, betas=(0.9, cfg.adam_beta2),
                                      weight_decay=cfg.weight_decay)
        start = int(self.state.get("fine_tune_from", {}).get("step", 0))
        lr_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, start))
        self.unet, self.optimizer, self.lr_sched = accelerator.prepare(unet, optimizer, lr_sched)
        accelerator.register_for_checkpointing(self.ema)
        for module in extra:
            accelerator.register_for_checkpointing(module)
        if self.latest is not None:
            accelerator.load_state(str(self.latest))
            accelerator.print(f"resumed from {self.latest} at step {self.state['step']}")
        elif warm is not None:
            self.ema.optimization_step = self.state["step"]
        self.meta = dict(name=f"cytomodel-{cfg.preset}", preset=cfg.preset, config=cfg.to_dict(),
                         data_hash=self.data.data_hash, data_source=self.data_source,
                         class_counts=dict(zip(self.data.class_names, self.counts.tolist())))
        if "fine_tune_from" in self.state:
            self.meta["fine_tune_from"] = self.state["fine_tune_from"]
        self.meta.update(self.state.get("framing_records", {}))

    def _parameters(self, unet) -> list[torch.nn.Parameter]:
        """Everything trained: the UNet's parameters and those of the objective's extra modules."""
        return list(unet.parameters()) + [p for m in self.objective.extra_modules() for p in m.parameters()]

    # ------------------------------------------------------------------ EMA weights, checkpoints, samples
    def with_ema(self, fn):
        """Run ``fn(model)`` with the EMA weights swapped into the network, then swap the live weights back."""
        raw = self.accelerator.unwrap_model(self.unet)
        params = self._parameters(raw)
        self.ema.store(params)
        self.ema.copy_to(params)
        try:
            return fn(self.objective.model(raw))
        finally:
            self.ema.restore(params)
            raw.train()

    def export_ema(self, step: int) -> CytoModel:
        def write(model: CytoModel) -> CytoModel:
            model.save_pretrained(self.out / "model", extra={
                **self.meta, **provenance_record(), "train_steps": step,
                "wall_seconds": round(self.state["wall_seconds"], 1)})
            return model
        return self.with_ema(write)

    def save(self, step: int) -> None:
        if not self.accelerator.is_main_process:
            return
        _save_checkpoint(self.accelerator, self.ckpt_root, step, self.cfg.keep_checkpoints, {
            **self.state, "step": step, "data_hash": self.data.data_hash, "pixel_mean": self.mean,
            "pixel_std": self.std, "objective": self.objective.state(), "config": self.cfg.to_dict(),
            "code_version": code_version()})
        self.export_ema(step)

    def sample_grid(self, step: int) -> None:
        if self.accelerator.is_main_process:
            path = self.out / "samples" / f"step-{step:07d}.png"
            self.with_ema(lambda m: self.objective.sample_grid(m, path, self.precision))

    # ------------------------------------------------------------------ step 3a: nothing left to train
    def already_done(self) -> CytoModel:
        step = self.step
        self.accelerator.print(f"already at step {step} >= max_steps={self.cfg.max_steps}; raise max_steps to "
                               "continue")
        saved = self.out / "model" / "cytomodel.json"
        if saved.is_file() and json.loads(saved.read_text()).get("train_steps") == step:
            # leave the exported model untouched: results cached against it (e.g. by `evaluate`) stay valid
            return load_model(self.out / "model")
        self.out.mkdir(parents=True, exist_ok=True)
        return self.export_ema(step)

    # ------------------------------------------------------------------ step 3b: the training loop
    def loop(self, progress: bool, max_minutes: float | None) -> None:
        cfg, accelerator, unet, state = self.cfg, self.accelerator, self.unet, self.state
        step = self.step
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "samples").mkdir(exist_ok=True)
        log = _TrainLog(self.out / "train_log.csv", cfg.batch_size * accelerator.num_processes,
                        accelerator.is_main_process)
        bar = None
        if progress and accelerator.is_local_main_process:
            bar = tqdm(total=cfg.max_steps, initial=step, desc=f"train {cfg.preset}", unit="step",
                       dynamic_ncols=True)
        unet.train()
        deadline = None if max_minutes is None else time.time() + 60 * max_minutes
        with _StopFlag() as stopper, log:
            while step < cfg.max_steps:
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97 + accelerator.process_index)
                loss = self.objective.loss(unet, gen, accelerator.autocast)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.grad_clip:
                    accelerator.clip_grad_norm_(self._parameters(unet), cfg.grad_clip)
                self.optimizer.step()
                self.lr_sched.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.ema.step(self._parameters(accelerator.unwrap_model(unet)))
                step += 1
                log.add(loss.item())
                if bar is not None:
                    bar.update(1)
                if step % 50 == 0 or step == cfg.max_steps:
                    avg, ips, seconds = log.window()
                    state["wall_seconds"] += seconds
                    log.write(step, avg, self.lr_sched.get_last_lr()[0], ips, state["wall_seconds"])
                    if bar is not None:
                        bar.set_postfix(loss=f"{avg:.4f}", img_s=f"{ips:.0f}")
                stop = stopper.stop or (deadline is not None and time.time() > deadline)
                if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or stop:
                    state["step"] = step
                    self.save(step)
                if step % cfg.sample_every == 0:
                    self.sample_grid(step)
                if stop:
                    accelerator.print(f"stopping at step {step} (checkpoint saved); continue with --resume")
                    break
        if bar is not None:
            bar.close()


def _check_training_data(cfg: TrainConfig, data: ImageArrays) -> np.ndarray:
    if data.images.shape[1] != cfg.resolution:
        raise ValueError(f"data are {data.images.shape[1]}px but the config says resolution={cfg.resolution}")
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    if (counts == 0).any():
        empty = [c for c, n in zip(data.class_names, counts) if n == 0]
        raise ValueError(f"class(es) {empty} have no training images")
    return counts


def _warm_start(init_from: str | Path, cfg: TrainConfig, data: ImageArrays) -> CytoModel:
    warm = load_model(init_from)
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
