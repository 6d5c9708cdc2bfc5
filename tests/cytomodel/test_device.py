"""The one device policy (cytomodel.runtime.resolve_device) and where loaded models and their tensors live."""
import numpy as np
import pytest
import torch

from cytomodel.cli import build_parser
from cytomodel.runtime import default_device, resolve_device


def test_resolve_device_policy():
    assert resolve_device(None) == default_device() == resolve_device("auto")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here: the error branch cannot run")
def test_cuda_asked_for_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here: the error branch cannot run")
def test_cli_reports_an_unavailable_device(tiny_model_dir, tiny_dataset, tmp_path, capsys):
    from cytomodel.cli import main

    assert main(["classify", "--model", str(tiny_model_dir), "--data", str(tiny_dataset), "--out",
                 str(tmp_path / "r.csv"), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_models_load_on_the_device_asked_for(tiny_model_dir):
    from cytomodel.models import load_base, load_generator, load_model

    cpu = torch.device("cpu")
    for model in (load_model(tiny_model_dir, device=resolve_device("cpu")),
                  load_generator(tiny_model_dir, device="cpu"), load_base(tiny_model_dir, device="cpu")):
        assert {p.device for p in model.unet.parameters()} == {cpu}
        assert model.device == cpu
        assert model.encode(np.zeros((1, model.resolution, model.resolution, 3), np.uint8)).device == cpu


def test_baseline_trains_and_predicts_on_the_device(tiny_dataset, tmp_path):
    from cytomodel.evaluate import load_baseline, train_baseline
    from cytomodel.data import load_dataset

    data = load_dataset(tiny_dataset, 16)
    clf = train_baseline(data, None, epochs=1, max_steps=1, progress=False, widths=(8,), blocks=(1,), device="cpu")
    assert clf.device == torch.device("cpu")
    clf.save_pretrained(tmp_path / "b")
    back = load_baseline(tmp_path / "b", device="cpu")
    assert {p.device for p in back.net.parameters()} == {torch.device("cpu")}
    assert back.predict_proba(data.images[:2]).shape == (2, 3)


def test_device_flag_on_the_commands_that_load_a_model():
    p = build_parser()
    for argv in (["generate", "--out", "o"], ["classify", "--data", "d", "--out", "o.csv"],
                 ["calibrate", "--data", "d"], ["explain", "--image", "i", "--target", "t", "--out", "o.png"],
                 ["evaluate", "--data", "d", "--out", "o"], ["baseline", "train", "--data", "d", "--out", "o"],
                 ["baseline", "predict", "--data", "d"]):
        assert p.parse_args(argv).device is None  # auto
        assert p.parse_args(argv + ["--device", "cpu"]).device == "cpu"


def test_set_takes_several_values_after_one_flag():
    p = build_parser()
    args = p.parse_args(["train", "--data", "d", "--out", "o", "--set", "a=1", "b=2", "--set", "c=3"])
    assert args.set == ["a=1", "b=2", "c=3"]
    args = p.parse_args(["train-variant", "--data", "d", "--out", "o", "--set", "a=1", "b=2"])
    assert args.set == ["a=1", "b=2"]
