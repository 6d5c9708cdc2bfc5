"""Training: a few steps on a tiny generated dataset learn something, checkpoints resume exactly where they stopped,
models round-trip through disk (also with plain diffusers), bad settings fail clearly, and every CLI command has
``--help``."""
import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file

from cytomodel.cli import build_parser, main
from cytomodel.data import ImageArrays, load_dataset
from cytomodel.models import CytoModel, build_scheduler, build_unet, load_model
from cytomodel.pipelines.scheduling import min_snr_weights
from cytomodel.train import augment, load_config, train
from cytomodel.train.loop import _lr_lambda


def tiny_cfg(**over):
    return load_config("tiny-16", overrides={"sample_every": 10_000, **over})


@pytest.fixture(scope="module")
def tiny_arrays(tiny_dataset):
    return load_dataset(tiny_dataset, 16)


def _weights(model_dir):
    return load_file(str(model_dir / "diffusion_pytorch_model.safetensors"))


def _eps_loss(unet, scheduler, data: ImageArrays, model: CytoModel) -> float:
    """ε-MSE of ``unet`` on the (un-augmented) data at fixed noise and timesteps."""
    g = torch.Generator().manual_seed(0)
    x0 = model.encode(data.images)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.linspace(50, 950, len(x0)).long()
    with torch.no_grad():
        pred = unet(scheduler.add_noise(x0, noise, t), t, class_labels=torch.from_numpy(data.labels)).sample
    return float(((pred - noise) ** 2).mean())


# ----------------------------------------------------------------------------------------------- training
def test_few_steps_learn_and_save_everything(tiny_model_dir, tiny_arrays):
    run = tiny_model_dir.parent
    model = load_model(tiny_model_dir)
    meta = json.loads((tiny_model_dir / "cytomodel.json").read_text())
    assert meta["train_steps"] == 30 and meta["class_names"] == ["alpha", "beta", "gamma"]
    assert meta["resolution"] == 16 and meta["data_hash"] == tiny_arrays.data_hash
    for key in ("code_version", "preprocessing", "config", "class_counts", "null_class"):
        assert key in meta, key
    assert meta["null_class"] == 3 and model.unet.config.num_class_embeds == 4
    # the log has a row for the last step, with a finite loss and a throughput
    rows = (run / "train_log.csv").read_text().splitlines()
    assert rows[0] == "step,loss,lr,images_per_s,wall_seconds" and rows[-1].startswith("30,")
    assert np.isfinite(float(rows[-1].split(",")[1])) and float(rows[-1].split(",")[3]) > 0
    # periodic checkpoints, oldest pruned (keep_checkpoints=2, checkpoint_every=10)
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-0000020", "step-0000030"]
    # 30 steps already denoise the cartoon cells far better than the same network untrained
    torch.manual_seed(0)
    fresh = build_unet(load_config("tiny-16"), 3).eval()
    trained_loss = _eps_loss(model.unet, model.scheduler, tiny_arrays, model)
    fresh_loss = _eps_loss(fresh, model.scheduler, tiny_arrays, model)
    assert trained_loss < 0.7 * fresh_loss, (trained_loss, fresh_loss)


def test_stop_and_resume_matches_an_uninterrupted_run(tiny_arrays, tmp_path):
    cfg = tiny_cfg(max_steps=12, checkpoint_every=4)
    train(cfg, tiny_arrays, tmp_path / "straight", progress=False)
    # max_minutes=0: checkpoint and stop after the first step, as on SIGTERM or a session's end
    stopped = train(cfg, tiny_arrays, tmp_path / "resumed", progress=False, max_minutes=0)
    assert stopped.metadata["train_steps"] == 1
    assert (tmp_path / "resumed" / "checkpoints" / "step-0000001").is_dir()
    resumed = train(cfg, tiny_arrays, tmp_path / "resumed", resume=True, progress=False)
    assert resumed.metadata["train_steps"] == 12
    a, b = _weights(tmp_path / "straight" / "model"), _weights(tmp_path / "resumed" / "model")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, f"resumed EMA weights differ from the uninterrupted run by {worst}"
    steps = [int(r.split(",")[0]) for r in (tmp_path / "resumed" / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps) and steps[-1] == 12
    # asking for more steps continues the same run
    more = train(tiny_cfg(max_steps=14, checkpoint_every=4), tiny_arrays, tmp_path / "resumed", resume=True,
                 progress=False)
    assert more.metadata["train_steps"] == 14


def test_resume_refuses_bad_situations(tiny_arrays, tmp_path, tiny_model_dir):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_cfg(max_steps=2), tiny_arrays, tmp_path / "empty", resume=True, progress=False)
    import shutil
    run = shutil.copytree(tiny_model_dir.parent, tmp_path / "run")
    other = ImageArrays(tiny_arrays.images[:21], np.arange(21) % 3, tiny_arrays.class_names,
                        tiny_arrays.records[:21], "another-hash")
    with pytest.raises(ValueError, match="trained on other data"):
        train(tiny_cfg(max_steps=40), other, run, resume=True, progress=False)


def test_training_input_checks(tiny_arrays, tmp_path):
    with pytest.raises(ValueError, match="16px but the config says resolution=32"):
        train(tiny_cfg(resolution=32), tiny_arrays, tmp_path / "a", progress=False)
    extra = ImageArrays(tiny_arrays.images, tiny_arrays.labels, [*tiny_arrays.class_names, "delta"],
                        tiny_arrays.records, tiny_arrays.data_hash)
    with pytest.raises(ValueError, match=r"\['delta'\] have no training images"):
        train(tiny_cfg(), extra, tmp_path / "b", progress=False)


def test_sample_grid_is_written(tiny_arrays, tmp_path):
    train(tiny_cfg(max_steps=2, sample_every=2, checkpoint_every=2), tiny_arrays, tmp_path, progress=False)
    from PIL import Image
    grid = Image.open(tmp_path / "samples" / "step-0000002.png")
    assert grid.height > 3 * 16  # one row per class


# ----------------------------------------------------------------------------------------------- persistence
def test_save_load_round_trip_identical_outputs(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 16, 16, generator=g)
    t, y = torch.tensor([10, 300, 600, 999]), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        ref = model.unet(x, t, class_labels=y).sample
    model.save_pretrained(tmp_path / "copy")
    back = load_model(tmp_path / "copy")
    with torch.no_grad():
        assert torch.equal(back.unet(x, t, class_labels=y).sample, ref)
    assert back.class_names == model.class_names and back.pixel_mean == model.pixel_mean
    assert back.scheduler.config.beta_schedule == model.scheduler.config.beta_schedule
    # plain diffusers reads the folder
    plain = UNet2DModel.from_pretrained(tmp_path / "copy").eval()
    with torch.no_grad():
        assert torch.equal(plain(x, t, class_labels=y).sample, ref)
    # fp16 storage: about half the bytes, nearly the same outputs once loaded back in fp32
    model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    half = load_model(tmp_path / "half")
    size = lambda d: (d / "diffusion_pytorch_model.safetensors").stat().st_size  # noqa: E731
    assert size(tmp_path / "half") < 0.6 * size(tmp_path / "copy")
    with torch.no_grad():
        assert (half.unet(x, t, class_labels=y).sample - ref).abs().max() < 5e-2
    assert next(half.unet.parameters()).dtype == torch.float32


def test_encode_decode_round_trip(tiny_model_dir, tiny_arrays):
    model = load_model(tiny_model_dir)
    np.testing.assert_array_equal(model.decode(model.encode(tiny_arrays.images)), tiny_arrays.images)
    assert abs(float(model.encode(tiny_arrays.images).mean())) < 0.1  # standardised model space


def test_not_a_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a cytomodel folder"):
        load_model(tmp_path)


# ----------------------------------------------------------------------------------------------- pieces
def test_min_snr_weights():
    sched = build_scheduler(load_config("tiny-16"))
    a = sched.alphas_cumprod
    t = torch.tensor([0, 100, 500, 999])
    w = min_snr_weights(a, t, 5.0)
    snr = a[t] / (1 - a[t])
    torch.testing.assert_close(w, torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert w[0] < 0.01 and w[-1] == 1.0  # low noise down-weighted, high noise untouched
    assert torch.equal(min_snr_weights(a, t, None), torch.ones(4))


def test_augment_is_dihedral_plus_mild_jitter():
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=g)
    cfg = argparse.Namespace(flips=True, rotations=True, color_jitter=0.0)
    out = augment(batch, cfg, g)
    x = batch.float() / 255
    for i in range(len(x)):  # every output is one of the 8 symmetries of its input
        views = [torch.rot90(v, k, (1, 2)) for v in (x[i], x[i].flip(-1)) for k in range(4)]
        assert any(torch.equal(out[i], v) for v in views)
    assert not torch.equal(out, x)  # and some were actually transformed
    plain = augment(batch, argparse.Namespace(flips=False, rotations=False, color_jitter=0.0), g)
    assert torch.equal(plain, x)
    jit = augment(batch, argparse.Namespace(flips=False, rotations=False, color_jitter=0.03), g)
    ratio = jit.clamp_min(1e-3) / x.clamp_min(1e-3)
    keep = x > 0.1
    assert 0 <= jit.min() and jit.max() <= 1 and (ratio[keep] - 1).abs().max() < 0.05


def test_lr_schedule():
    cfg = load_config("cpu-32", overrides={"max_steps": 1000, "lr_warmup_steps": 100, "lr_min_ratio": 0.1})
    f = _lr_lambda(cfg)
    assert f(0) == pytest.approx(0.01) and f(99) == pytest.approx(1.0) and f(100) == pytest.approx(1.0)
    assert f(550) == pytest.approx(0.55) and f(1000) == pytest.approx(0.1)
    g = _lr_lambda(load_config("cpu-32", overrides={"lr_schedule": "constant"}))
    assert g(10_000) == 1.0


# ----------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("override, field", [
    ("resolution=20", "resolution"),                 # not divisible by 2**(levels-1)
    ("block_out_channels=[12, 24, 48, 48]", "block_out_channels"),  # not divisible by norm groups
    ("class_dropout=1.0", "class_dropout"), ("crop_fraction=0", "crop_fraction"),
    ("mixed_precision='fp8'", "mixed_precision"), ("lr_schedule='step'", "lr_schedule"),
    ("ema_max_decay=1.5", "ema_max_decay"), ("attention_levels=9", "attention_levels"),
    ("max_steps=-5", "max_steps"), ("color_jitter=0.7", "color_jitter"), ("batch_size=2.5", "batch_size"),
])
def test_bad_config_values_name_the_field(override, field):
    with pytest.raises(ValueError, match=field):
        load_config("cpu-32", overrides=[override])


def test_bad_config_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config("cpu-32", tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("max_steps = = 3\n")
    with pytest.raises(ValueError, match="bad.toml"):
        load_config("cpu-32", bad)
    (tmp_path / "typo.toml").write_text("[train]\nmax_stepz = 3\n")
    with pytest.raises(ValueError, match="max_stepz"):
        load_config("cpu-32", tmp_path / "typo.toml")
    with pytest.raises(ValueError, match="key=value"):
        load_config("cpu-32", overrides=["max_steps"])


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_train_and_resume(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_dataset), "--preset", "tiny-16", "--set", "sample_every=1000",
            "--out", str(out)]
    assert main([*args, "--set", "max_steps=3"]) == 0
    assert "(step 3)" in capsys.readouterr().out
    assert main([*args, "--set", "max_steps=5", "--resume"]) == 0
    assert "(step 5)" in capsys.readouterr().out
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--preset", "tiny-16", "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*args, "--set", "max_steps=oops"]) == 2
    assert "max_steps" in capsys.readouterr().err


def _all_commands(parser: argparse.ArgumentParser, prefix=()):
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_commands(sub, (*prefix, name))


def test_every_command_has_help(capsys):
    commands = list(_all_commands(build_parser()))
    names = {" ".join(c) for c in commands}
    assert {"", "train", "generate", "baseline", "baseline train", "baseline predict"} <= names
    for cmd in commands:
        with pytest.raises(SystemExit) as exc:
            main([*cmd, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith("usage: cytomodel") and "--help" in text, cmd


def test_python_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "cytomodel", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage: cytomodel" in out.stdout
