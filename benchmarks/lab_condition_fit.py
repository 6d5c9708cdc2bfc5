"""Probe (issue 23): fit a lab's conditioning vector by maximum likelihood, then classify with it.

A model fine-tuned with non-leaky lab variation (``data/models/cpu-32-lab``) is told, through its augmentation
embedding, how a training image was varied (stain, gain, hue, blur, noise, JPEG, zoom).  For another lab's set the
vector is unknown; this fits it without labels — Adam on the null-class denoising loss of the set's framed cells,
the parameters clamped to training's ranges — and classifies the set under it (the default classifier otherwise).
Compared with the defaults ("none") and the "unknown" token in docs/real-images.md.

    python benchmarks/lab_condition_fit.py tecom --steps 200 --classify --out runs/lab-fit
"""
import argparse, json, math, sys, time
from pathlib import Path
import numpy as np, torch
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO)); sys.path.insert(0, str(REPO / "benchmarks"))
from cross_lab import datasets, summary, SHIFT_CLASSES
from cytomodel.models import load_base
from cytomodel.models.lab_embedding import DIM, _SCALE
from cytomodel.data import framed_arrays
from cytomodel.runtime import configure_runtime

p = argparse.ArgumentParser()
p.add_argument("dataset"); p.add_argument("--steps", type=int, default=150); p.add_argument("--batch", type=int, default=128)
p.add_argument("--model", default=str(REPO / "data/models/cpu-32-lab")); p.add_argument("--synthetic", default=None)
p.add_argument("--classify", action="store_true"); p.add_argument("--out", required=True)
p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
p.add_argument("--free", default="all"); p.add_argument("--load", action="store_true")
a = p.parse_args()
configure_runtime()
torch.manual_seed(0)
model = load_base(a.model)
model.unet.float()
for q in model.unet.parameters(): q.requires_grad_(False)
for q in model.augmentation.parameters(): q.requires_grad_(False)
data = datasets(Path(a.shared))
items, classes = data[a.dataset]
intake = model.intake()
cells = intake.frame([pp for pp, _ in items])
arr, keep = framed_arrays(cells, model.resolution)
x0 = model.encode(arr)
if a.synthetic:  # apply a known augmentation (raw params json) to test recovery
    from cytomodel.train import lab_augmentation as lab
    true = torch.tensor(json.loads(a.synthetic), dtype=torch.float32)
    raw = torch.zeros(DIM); raw[:len(true)] = true
    g = torch.Generator().manual_seed(1)
    pix = torch.as_tensor(arr).permute(0, 3, 1, 2).float() / 255
    pix = lab.apply(pix, raw.expand(len(pix), DIM).clone(), g)
    arr = (pix.permute(0, 2, 3, 1) * 255 + .5).to(torch.uint8).numpy()
    x0 = model.encode(arr)
n = len(x0)
print(f"{a.dataset}: {n} framed", flush=True)
# free entries in encoded units; hue handled as an angle
IDX = [0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 18]
LO = torch.tensor([-1, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1, -1.])
HI = torch.tensor([1, 1, 1, 0.7, 1, 1, 1, 1, 1, 1, 1, 1, 1.])
if a.free == "colour":
    mask = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1.])
else:
    mask = torch.ones(len(IDX))
u = torch.zeros(len(IDX), requires_grad=True)
hue = torch.zeros(1, requires_grad=True)  # turns / 0.1


def vec(u, hue):
    v = torch.zeros(1, DIM)
    v[0, IDX] = u * mask
    ang = hue * 0.1 * 2 * math.pi
    v[0, 14] = torch.cos(ang)[0] - 1
    v[0, 15] = torch.sin(ang)[0]
    return v


alphas = model.scheduler.alphas_cumprod.float()
null = model.null_class
opt = torch.optim.Adam([u, hue], lr=0.05)
gen = torch.Generator().manual_seed(0)


def loss_at(v, idx, t, eps):
    a_t = alphas[t].view(-1, 1, 1, 1)
    xt = a_t.sqrt() * x0[idx] + (1 - a_t).sqrt() * eps
    with model.augmentation.conditioned_on(v):
        pred = model.unet(xt, t, class_labels=torch.full((len(idx),), null)).sample
    return (pred - eps).pow(2).mean()


t0 = time.time()
hist = []
for step in range(0 if a.load else a.steps):
    idx = torch.randint(0, n, (a.batch,), generator=gen)
    t = torch.randint(100, 900, (a.batch,), generator=gen)
    eps = torch.randn((a.batch, 3, model.resolution, model.resolution), generator=gen)
    v = vec(u, hue)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_at(v, idx, t, eps)
    opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        u.copy_(torch.maximum(torch.minimum(u, HI), LO)); hue.clamp_(-1, 1)
    hist.append(float(loss.detach()))
    if step % 10 == 0 or step == a.steps - 1:
        print(f"step {step} loss {np.mean(hist[-10:]):.5f} u {np.round(u.detach().numpy(), 2).tolist()} hue {float(hue):.2f} "
              f"{time.time() - t0:.0f}s", flush=True)
v = vec(u, hue).detach()
tag = a.dataset + ("-syn" if a.synthetic else "") + ("-" + a.free if a.free != "all" else "")
if a.load: v = torch.tensor(json.load(open(Path(a.out) / f"{tag}.json"))["vec"])
raw = (v / _SCALE).numpy()[0]
print("fitted raw params:", dict(zip(["log_zoom", "rc", "rs", "sx", "sy", "blur", "noise", "jpeg", "g_r", "g_g", "g_b", "gain_r", "gain_g", "gain_b", "hc", "hs", "sat", "con", "bri", "unk"], np.round(raw, 3).tolist())))
# compare losses on a fixed evaluation set: none vs fitted vs unknown
from cytomodel.models.lab_embedding import unknown_vector
g2 = torch.Generator().manual_seed(123)
ev = []
with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
    for _ in range(8):
        idx = torch.randint(0, n, (256,), generator=g2); t = torch.randint(100, 900, (256,), generator=g2)
        eps = torch.randn((256, 3, model.resolution, model.resolution), generator=g2)
        ev.append([float(loss_at(w, idx, t, eps)) for w in (torch.zeros(1, DIM), v, unknown_vector(1))])
print("eval loss none / fitted / unknown:", np.round(np.mean(ev, 0), 5).tolist(), flush=True)
out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
tag = a.dataset + ("-syn" if a.synthetic else "") + ("-" + a.free if a.free != "all" else "")
if not a.load: json.dump({"vec": v.tolist(), "raw": [float(e) for e in raw], "eval": [float(e) for e in np.mean(ev, 0)]}, open(out / f"{tag}.json", "w"))
if a.classify:
    from cytomodel.classify import ClassifierConfig, classify_folder
    model.unet.to(torch.float32)
    model.lab_condition = lambda kind: model.augmentation.conditioned_on(v)
    t1 = time.time()
    table = classify_folder(model, None, out / f"{tag}-classify.csv", ClassifierConfig(), items=items, classes=classes,
                            progress=False, intake=intake)
    res = summary(table, classes or model.class_names, "pred_class")
    print("CLASSIFY", tag, json.dumps(res, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)), f"{time.time() - t1:.0f}s", flush=True)
