"""The whole road at toy scale, through the command lines a research group uses:

    cytomodel train -> cytostudy build -> simulated raters (the real session code and database) -> cytostudy export
    -> cytoanalysis report

Each step's output is the next step's input, the report holds every figure it lists, and the ids and hashes that tie a
figure to its responses, study, stimuli, model weights and training data line up across the five steps."""
import json

import pytest

from cytocore.provenance import sha256_file


TOY_STUDY = """
[study]
id = "toy"
code = "TOY"
seed = 1
[stimuli]
n_per_class = 2
morph_strengths = [0.5]
steps = 3
display_px = 96
practice_per_source = 1
attention_per_source = 1
classify = true
classifier = { strategy = "exhaustive", trials = 2, image_batch = 64 }
[design]
block_size = 6
practice_trials = 2
attention_checks = 1
min_rt_ms = 30.0
"""


@pytest.mark.slow
def test_five_steps_from_images_to_a_report(tiny_dataset, tmp_path):
    from analysis.cli import main as analysis_main
    from cytomodel.cli import main as model_main
    from study_app.cli import main as study_main

    # 1. train (a few steps of the tiny preset)
    run = tmp_path / "run"
    assert model_main(["train", "--data", str(tiny_dataset), "--preset", "tiny-16", "--set", "max_steps=6",
                       "--set", "sample_every=1000", "--out", str(run)]) == 0
    model_dir = run / "model"
    model_meta = json.loads((model_dir / "cytomodel.json").read_text())
    # 2. build the study with that model
    cfg = tmp_path / "study.toml"
    cfg.write_text(TOY_STUDY)
    study = tmp_path / "study"
    assert study_main(["build", "--data", str(tiny_dataset), "--model", str(model_dir), "--config", str(cfg),
                       "--out", str(study)]) == 0
    study_meta = json.loads((study / "study.json").read_text())
    from cytocore.lineage import lineage_from_study_folder
    own = lineage_from_study_folder(study)    # the study folder alone names its model's steps and training data
    assert own["model_train_steps"] == 6 and own["model_training_data_hash"] == model_meta["data_hash"]
    # 3. two simulated raters take it through the real session code and database
    assert study_main(["simulate", str(study), "--n", "2", "--seed", "3"]) == 0
    # 4. export
    export = tmp_path / "responses.parquet"
    assert study_main(["export", str(study), "--out", str(export)]) == 0
    # 5. analyse (a short sampling run)
    report = tmp_path / "report"
    rc = analysis_main(["report", "--data", str(export), "--study", str(study), "--out", str(report), "--quiet",
                        "--allow-diagnostic-failures", "--analyses", "sdt,power", "--set", "sampler.draws=60",
                        "sampler.tune=60", "sampler.chains=2", "power_sims=0"])
    assert rc == 0, rc   # a short run fails the diagnostic gate, allowed here; no step may fail
    md = (report / "report.md").read_text()
    assert (report / "report.html").is_file()
    prov = json.loads((report / "provenance.json").read_text())
    # every figure the report names is there
    figures = sorted(p.name for p in (report / "figures").iterdir()) if (report / "figures").is_dir() else []
    assert figures, "the report wrote no figures"
    for name in figures:
        assert name in md or name.rsplit(".", 1)[0] in md, f"{name} is not in report.md"
    # the chain of ids and hashes
    lineage = prov["lineage"]
    assert lineage["study_id"] == "toy" == study_meta["study_id"]
    assert lineage["study_content_hash"] == study_meta["content_hash"]
    assert lineage["study_config_hash"] == study_meta["config_hash"]
    assert lineage["manifest_sha256"] == sha256_file(study / "manifest.csv")
    assert lineage["model_weights_sha256"] == sha256_file(model_dir / "diffusion_pytorch_model.safetensors")
    assert lineage["model_training_data_hash"] == model_meta["data_hash"]
    assert lineage["model_train_steps"] == 6
    assert lineage["stimuli_source_hash"] == study_meta["provenance"]["data_hash"]
    assert prov["input_file_sha256"] == sha256_file(export)
    stimuli = tmp_path / "stimuli.parquet"                             # the export's second table, beside it
    assert prov["input_stimuli"] == str(stimuli) and prov["input_stimuli_sha256"] == sha256_file(stimuli)
    assert prov["skipped_steps"]["power"].startswith("power_sims = 0")
