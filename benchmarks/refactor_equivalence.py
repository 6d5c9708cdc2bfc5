"""Same seeds, same outputs: the package layout of issue 20 against the code before it, through the command line.

One tiny model (``cytomodel train --preset tiny-16`` on ``cytomodel.testing.make_dataset`` output), a tiny
super-resolution stage and their cascade are trained once, with the code before the change; then the same commands
run under the code before (``--base``, a commit exported with ``git archive``) and under this working tree, each in
its own output folder, and every file they write is compared byte for byte (JSON records without their times and
code versions), with the ``--help`` text of every command and subcommand. The commands: generate (base stage and cascade, fresh and SDEdit), classify (top-k, paired t-test,
exhaustive with a disc region, a cascade), calibrate from results, explain, framing show, baseline train and
predict, triage; and the tiny trainings themselves, repeated under each tree.

    python benchmarks/refactor_equivalence.py --base 5dad24d --work /tmp/equiv

Exit status 0 when every output matches; the table of what was compared is printed either way.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# -P: the caller's folder is not put first on the path, so a run started in a checkout imports PYTHONPATH's tree
PY = [sys.executable, "-P"]
# keys of JSON records that hold times, code versions or the machine's load, not results
VOLATILE = {"created_utc", "code_version", "model_code_version", "wall_seconds", "seconds", "threads"}


def export_tree(rev: str, dest: Path) -> Path:
    """The packages of commit ``rev`` in ``dest`` (what ``PYTHONPATH`` points at)."""
    if (dest / "cytomodel").is_dir():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".tar") as tar:
        subprocess.run(["git", "-C", str(REPO), "archive", "-o", tar.name, rev, "cytomodel", "cytocore"], check=True)
        with tarfile.open(tar.name) as t:
            t.extractall(dest, filter="data")
    return dest


def run(tree: Path, args: list, cwd: Path, env: dict) -> None:
    """``python -m cytomodel ARGS`` with ``tree`` first on the path."""
    cmd = [*PY, "-m", "cytomodel", *map(str, args)]
    out = subprocess.run(cmd, cwd=cwd, env={**env, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed under {tree}: {' '.join(cmd)}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")


def python(tree: Path, code: str, env: dict) -> None:
    subprocess.run([*PY, "-c", code], env={**env, "PYTHONPATH": str(tree)}, check=True)


def prepare(tree: Path, work: Path, env: dict) -> dict[str, Path]:
    """The shared inputs, made once under ``tree``: data, a base stage, a super-resolution stage, their cascade,
    and a baseline CNN."""
    data, models = work / "data", work / "models"
    if not data.is_dir():
        python(tree, f"from pathlib import Path; from cytomodel.testing import make_dataset; "
                     f"make_dataset(Path({str(data)!r}), n_per_class=12, size=40, seed=0)", env)
    if not (models / "base" / "model").is_dir():
        run(tree, ["train", "--data", data, "--preset", "tiny-16", "--out", models / "base"], work, env)
        run(tree, ["train", "--data", data, "--preset", "tiny-sr32", "--out", models / "superres"], work, env)
        run(tree, ["cascade", "--base", models / "base" / "model", "--superres", models / "superres" / "model",
                   "--out", models / "cascade", "--superres-steps", "4"], work, env)
        run(tree, ["baseline", "train", "--data", data, "--resolution", "16", "--epochs", "2", "--batch-size", "8",
                   "--out", models / "baseline"], work, env)
    return {"data": data, "base": models / "base" / "model", "cascade": models / "cascade",
            "baseline": models / "baseline"}


def commands(inp: dict[str, Path]) -> list[list]:
    d, m, c = inp["data"], inp["base"], inp["cascade"]
    some = [d / "alpha" / "alpha_000.png", d / "gamma" / "gamma_001.png"]
    return [
        ["train", "--data", d, "--preset", "tiny-16", "--out", "train_base"],
        ["train", "--data", d, "--preset", "tiny-sr32", "--out", "train_superres"],
        ["generate", "--model", m, "--class", "all", "--n", "3", "--seed", "5", "--steps", "10", "--out", "gen",
         "--grid"],
        ["generate", "--model", m, "--class", "beta", "--from-image", *some, "--strength", "0.6", "--steps", "10",
         "--guidance", "3", "--out", "morph"],
        ["generate", "--model", c, "--class", "alpha,gamma", "--n", "2", "--steps", "6", "--out", "gen_cascade"],
        ["generate", "--model", c, "--class", "gamma", "--from-image", *some, "--strength", "0.5", "--steps", "6",
         "--superres-steps", "3", "--out", "morph_cascade"],
        ["classify", "--model", m, "--data", d, "--out", "classify_topk.csv"],
        ["classify", "--model", m, "--data", d, "--out", "classify_ttest.csv", "--strategy", "paired-ttest",
         "--trials", "12", "--min-trials", "3", "--seed", "3"],
        ["classify", "--model", m, "--data", d, "--out", "classify_exhaustive.parquet", "--strategy", "exhaustive",
         "--trials", "6", "--error-region", "disc", "--precision", "fp32"],
        ["classify", "--model", c, "--data", d, "--out", "classify_cascade.csv", "--limit", "12"],
        ["explain", "--model", m, "--image", some[0], "--target", "beta", "--trials", "8", "--out", "explain.png"],
        ["framing", "show", "--model", m, "--data", d, "--limit", "6", "--out", "framing_show"],
        ["baseline", "train", "--data", d, "--resolution", "16", "--epochs", "2", "--batch-size", "8",
         "--out", "baseline"],
        ["baseline", "predict", "--model", inp["baseline"], "--data", d, "--out", "baseline_predict.csv"],
        ["triage", "--calibration", "classify_topk.csv", "--cells", "classify_ttest.csv", "--compare",
         "baseline=baseline_predict.csv,baseline_predict.csv", "--target-error", "0.3", "--flag-rate", "0.2",
         "--out", "triage"],
    ]


HELP = """
import argparse, sys
from pathlib import Path
from cytomodel.cli import build_parser

def walk(parser, name, out):
    (out / f"{name}.txt").write_text(parser.format_help())
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                walk(p, f"{name} {sub}", out)

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
walk(build_parser(), "cytomodel", out)
"""


def helps(tree: Path, out: Path, env: dict) -> None:
    """Every command's and subcommand's --help text (the commands and their flags), one file each."""
    subprocess.run([*PY, "-c", HELP, str(out / "help")], env={**env, "PYTHONPATH": str(tree),
                                                                         "COLUMNS": "120"}, check=True)


def calibrate(tree: Path, inp: dict[str, Path], out: Path, env: dict) -> None:
    """``calibrate --from-results`` writes the temperature into the model folder: a copy of it, here."""
    shutil.copytree(inp["base"], out / "model_copy")
    run(tree, ["calibrate", "--model", out / "model_copy", "--data", inp["data"], "--from-results",
               "classify_exhaustive.parquet", "--rescored-out", "rescored.csv", "--strategy", "exhaustive",
               "--trials", "6", "--error-region", "disc", "--precision", "fp32"], out, env)


IN_PROCESS = """
import json, os, sys
from cytomodel.cli import main
out, commands = sys.argv[1], json.loads(sys.argv[2])
for args in commands:
    os.chdir(out)
    if main(args) != 0:
        raise SystemExit(f"failed: cytomodel {' '.join(args)}")
"""


def run_all(tree: Path, inp: dict[str, Path], out: Path, env: dict, in_process: bool = False,
            training: bool = True) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    helps(tree, out, env)
    todo = [a for a in commands(inp) if training or a[0] != "train"]
    if in_process:  # one Python process for every command: the imports once, for a loaded machine
        cmds = json.dumps([[str(x) for x in a] for a in todo])
        subprocess.run([*PY, "-c", IN_PROCESS, str(out), cmds], env={**env, "PYTHONPATH": str(tree)},
                       check=True)
    else:
        for args in todo:
            run(tree, args, out, env)
    calibrate(tree, inp, out, env)


def _strip(x):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _digest(path: Path) -> str:
    if path.suffix == ".json":
        text = json.dumps(_strip(json.loads(path.read_text())), sort_keys=True)
        return "json:" + hashlib.sha256(text.encode()).hexdigest()
    if path.name == "train_log.csv":  # loss per window is compared; images/s and seconds are the machine's
        rows = [r.split(",")[:3] for r in path.read_text().splitlines()]
        return "log:" + hashlib.sha256(repr(rows).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(a: Path, b: Path, skip_training: bool = False) -> tuple[list[str], list[str]]:
    """(files that match, files that differ or are missing on one side), relative to the output folders."""
    fa = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    fb = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    same, diff = [], []
    for rel in sorted(fa | fb):
        if rel.parts[0] in ("train_base", "train_superres") and (rel.parts[1] == "checkpoints" or skip_training):
            continue  # optimiser state and RNG files of accelerate; the exported weights are compared
        if rel not in fa or rel not in fb:
            diff.append(f"{rel} (only in {'before' if rel in fa else 'after'})")
        elif _digest(a / rel) == _digest(b / rel):
            same.append(str(rel))
        else:
            diff.append(str(rel))
    return same, diff


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="5dad24d", help="the commit before the change (%(default)s)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cytomodel-equivalence")
    ap.add_argument("--threads", default="2", help="torch threads of every run (%(default)s)")
    ap.add_argument("--in-process", action="store_true", help="run each tree's commands in one Python process "
                    "(cytomodel.cli.main; imports once) instead of one process per command")
    ap.add_argument("--no-training", action="store_true", help="leave out the two tiny trainings")
    ap.add_argument("--keep-before", action="store_true", help="reuse the outputs of an earlier run of the code "
                    "before (in --work) instead of running it again")
    ap.add_argument("--after", type=Path, default=REPO, help="the tree after the change (default: this one; the "
                    "exported --base tree checks that the runs themselves are repeatable)")
    a = ap.parse_args()
    work = a.work.resolve()
    # SOURCE_DATE_EPOCH: matplotlib's PDF/SVG creation dates fixed, so a figure compares by its content
    env = {**os.environ, "CYTOMODEL_THREADS": a.threads, "CYTOSTUDY_CACHE": str(work / "cache"),
           "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "0"}
    before = export_tree(a.base, work / f"tree-{a.base}")
    inp = prepare(before, work, env)
    if not (a.keep_before and (work / "out-before").is_dir()):
        run_all(before, inp, work / "out-before", env, a.in_process, not a.no_training)
    elif not (work / "out-before" / "help").is_dir():
        helps(before, work / "out-before", env)
    after = a.after.resolve()
    run_all(after, inp, work / "out-after", env, a.in_process, not a.no_training)
    same, diff = compare(work / "out-before", work / "out-after", a.no_training)
    print(f"code before: {a.base} ({before}); after: {after}")
    print(f"{len(same)} files identical, {len(diff)} different")
    for rel in same:
        print(f"  same  {rel}")
    for rel in diff:
        print(f"  DIFF  {rel}")
    return 0 if not diff else 1


if __name__ == "__main__":
    sys.exit(main())
