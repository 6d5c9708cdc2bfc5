"""Where each stimulus comes from: real images picked per role, fully generated cells, SDEdit morphs of real ones.

Every array here is at the model's output resolution (``model.resolution``: 128 px for the cascade), real images
cropped as the model's record says (:mod:`.framing`) and resized with the model's own preprocessing."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..config import StudyConfig
from .guard import StudyBuildError


@dataclass
class Item:
    role: str
    source: str
    true_class: str
    morph_strength: float
    array: np.ndarray
    origin: str
    seed: int | None = None


def match_classes(labels: Sequence[str], model_classes: Sequence[str], cfg: StudyConfig, data: str,
                  model_dir: str) -> list[str]:
    """The study's classes: the configured ones (each must be in the data and the model) or every model class
    present in the data; a clear error when model and data do not fit."""
    labels, model_classes = sorted(set(labels)), list(model_classes)
    wanted = list(cfg.stimuli.classes)
    if wanted:
        not_model = [c for c in wanted if c not in model_classes]
        not_data = [c for c in wanted if c not in labels]
        if not_model or not_data:
            raise StudyBuildError(
                "stimuli.classes " + "; ".join(
                    ([f"{not_model} are not classes of the model {model_dir} ({', '.join(model_classes)})"]
                     if not_model else []) +
                    ([f"{not_data} have no images in {data} ({', '.join(labels)})"] if not_data else [])) +
                ": list only classes both have")
        return wanted
    shared = [c for c in model_classes if c in labels]
    if len(shared) < 2:
        raise StudyBuildError(
            f"the model {model_dir} and the data {data} share {len(shared)} class(es) ({shared}): the model knows "
            f"{model_classes}, the data's class folders are {labels}. A study needs at least two classes both "
            "know: use a model trained on these classes, or rename the data's class folders to the model's names")
    return shared


def n_extra_real(cfg: StudyConfig, n_classes: int) -> tuple[int, int]:
    """Real practice and attention candidates per class (trimmed to the configured pool sizes later)."""
    s = cfg.stimuli
    return (math.ceil(s.practice_per_source / n_classes),
            math.ceil(s.attention_per_source / n_classes) if cfg.design.attention_checks else 0)


def select_real(records, classes: Sequence[str], cfg: StudyConfig, rng: np.random.Generator) -> dict[str, dict]:
    """Disjoint real images per class for: main, morph sources, examples; and pools for practice / attention."""
    s = cfg.stimuli
    n_morph = (s.n_morph_per_class if s.n_morph_per_class is not None else s.n_per_class) * len(s.morph_strengths)
    n_prac, n_att = n_extra_real(cfg, len(classes))
    need = s.n_per_class + n_morph + s.examples_per_class + n_prac + n_att
    out = {}
    for c in classes:
        paths = sorted(str(r.path) for r in records if r.label == c)
        if len(paths) < need:
            raise StudyBuildError(
                f"class {c!r} has {len(paths)} real images but this config needs {need} distinct ones "
                f"({s.n_per_class} main + {n_morph} morph sources + {s.examples_per_class} examples + "
                f"{n_prac} practice + {n_att} attention); lower stimuli.n_per_class / morph settings")
        rng.shuffle(paths)
        it = iter(paths)
        out[c] = {role: [next(it) for _ in range(k)] for role, k in (
            ("main", s.n_per_class), ("morph", n_morph), ("example", s.examples_per_class),
            ("practice", n_prac), ("attention", n_att))}
    return out


def real_items(picked: dict[str, dict], classes: Sequence[str], real_array: Callable[[str], np.ndarray],
               rel: Callable[[str], str]) -> list[Item]:
    return [Item(role, "real", c, 0.0, real_array(p), rel(p))
            for c in classes for role in ("main", "example", "practice", "attention") for p in picked[c][role]]


def synthetic_items(model, classes: Sequence[str], cfg: StudyConfig, progress: bool) -> tuple[list[Item], list[Item]]:
    """Fully generated cells: (main items, extra items for the practice and attention pools)."""
    from cytomodel.pipelines.generate import generate_images

    s = cfg.stimuli
    n_syn = s.n_synthetic_per_class if s.n_synthetic_per_class is not None else s.n_per_class
    n_extra = sum(n_extra_real(cfg, len(classes)))
    gen = generate_images(model, classes, n_syn + n_extra, guidance=s.guidance, steps=s.steps, seed=s.seed,
                          progress=progress, superres_steps=s.superres_steps)
    main, extra, seen = [], [], {c: 0 for c in classes}
    for arr, row in zip(gen.images, gen.records.itertuples()):
        item = Item("main", "synthetic", row.class_name, 1.0, arr, "generated", int(row.seed))
        (main if seen[row.class_name] < n_syn else extra).append(item)
        seen[row.class_name] += 1
    return main, extra


def fill_pools(items: list[Item], extra_syn: list[Item], cfg: StudyConfig, rng: np.random.Generator) -> None:
    """The extra synthetic cells fill the practice pool, then the attention pool (random classes); the real
    candidates (one per class) are trimmed to the configured pool sizes, random classes."""
    s = cfg.stimuli
    n_att = s.attention_per_source if cfg.design.attention_checks else 0
    for rank, j in enumerate(rng.permutation(len(extra_syn))):
        if rank < s.practice_per_source + n_att:
            extra_syn[j].role = "practice" if rank < s.practice_per_source else "attention"
            items.append(extra_syn[j])
    for role, n in (("practice", s.practice_per_source), ("attention", n_att)):
        pool = [it for it in items if it.role == role and it.source == "real"]
        for j in sorted(rng.permutation(len(pool))[n:]):
            items.remove(pool[j])


def morph_items(model, picked: dict[str, dict], classes: Sequence[str], cfg: StudyConfig,
                real_array: Callable[[str], np.ndarray], rel: Callable[[str], str], progress: bool,
                say: Callable[[str], None]) -> list[Item]:
    """SDEdit morphs of real images (never also shown as real stimuli), per configured strength."""
    from cytomodel.pipelines.generate import sdedit_images

    s = cfg.stimuli
    n_morph = s.n_morph_per_class if s.n_morph_per_class is not None else s.n_per_class
    out: list[Item] = []
    for k, strength in enumerate(s.morph_strengths):
        pairs = [(p, c) for c in classes for p in picked[c]["morph"][k * n_morph:(k + 1) * n_morph]]
        if not pairs:
            continue
        say(f"SDEdit morphs at strength {strength:g}: {len(pairs)} images")
        batch = sdedit_images(model, np.stack([real_array(p) for p, _ in pairs]), [c for _, c in pairs], strength,
                              guidance=s.guidance, steps=s.steps, seed=s.seed + 10_000 * (k + 1),
                              names=[rel(p) for p, _ in pairs], progress=progress, superres_steps=s.superres_steps)
        out += [Item("main", "synthetic", row.class_name, float(strength), arr, row.init_image, int(row.seed))
                for arr, row in zip(batch.images, batch.records.itertuples())]
    return out
