"""Classification by denoising error (a diffusion classifier, as in Li et al. 2023 and CytoDiffusion).

For an image x and a class c the model's weighted denoising error

    E_c = E_{t, ε} [ w_t · mean_pixels (ε − ε_θ(x_t, t, c))² ],   x_t = √ᾱ_t x + √(1 − ᾱ_t) ε

is (up to constants) a bound on −log p(x | c), so the class with the lowest error is the prediction.

How it is estimated here
------------------------
* **Paired draws.** A draw is one (t, ε) and one dihedral view of the image (the model was trained with
  flips/rotations); *every still-active class* is evaluated on that same x_t, in one batched UNet call. Class
  differences are therefore paired: the noise common to all classes cancels. (The command line's ``--trials`` and the
  results' ``trials`` column count draws.)
* **Batched.** Many images, each with its own set of active classes, are flattened into (image, class) pairs and
  sent through the UNet together, several draws at a time.
* **Deterministic per image.** Each image's (t, ε, view) sequence (its draw plan) comes from a generator seeded by the
  image's pixels and ``seed``, so a result never depends on batch composition, input order or sharding.
* **Timesteps.** ``timestep_selection="vdc"`` (default) spreads draw k's timestep over [t_min, t_max] with a van
  der Corput sequence plus a per-image random offset: every prefix of draws is stratified over noise levels, which
  is what adaptive strategies need. ``"stratified"`` (a shuffled even grid) and ``"random"`` (iid) also exist.
* **Adaptive evaluation** (``strategy``):
  - ``"paired-ttest"`` (CytoDiffusion): after ``min_trials`` and then every ``test_every`` draws, every active class
    whose paired errors are worse than the current best's with a two-sided paired t-test p < ``p_value`` is dropped;
    an image stops when one class is left or after ``trials`` draws.
  - ``"topk"`` (Li et al. 2023): ``topk_schedule`` = ((n₁, k₁), (n₂, k₂), …): after n_i draws keep the k_i classes
    with the lowest mean error; an image stops when one class is left or after ``trials`` draws.
  - ``"exhaustive"``: every class for ``trials`` draws.
  ``unet_calls`` (image–class forward passes) is reported per image.

Per-class errors of pruned classes are *paired-adjusted*: E_c = mean(e_ref) + mean_{draws of c}(e_c − e_ref), where
ref is the final best class (evaluated in every draw). With ``exhaustive`` this is the plain mean.

Outputs
-------
probabilities softmax(−E/T) with the temperature T fitted on validation data by NLL (:func:`fit_temperature`,
``cytomodel calibrate``; a model without T uses T = 1 and says so), confidence = max p, entropy (nats),
margin = p₁ − p₂, and the anomaly score. The anomaly score is, with ``anomaly="best-error"``, ``"class-gain"``,
``"texture"``, ``"class-gain+texture"`` or ``"class-gain+texture+baseline"`` and their variants (all but the first two
read a cascade's 128-px stage, :mod:`.texture`; the last adds a baseline CNN's view, :mod:`.baseline_part`), how unlike the
validation cells of its predicted class the cell is (:mod:`.novelty`); by default it is −ζ with CytoDiffusion's ζ (their released code,
``zeta_anomaly``): let g_(0) = 0 ≤ g_(1) ≤ … be the sorted gaps E_c − min E, divided by their mean over all classes
(scale-free), and k = min(C − 1, 10); then

    ζ = (1/k) Σ_{j=1}^{k−1} g_(j)  −  1/(k(k−1)) Σ_{j=1}^{k−1} Σ_{l=1}^{k−1} |g_(l) − g_(j)|,

"the mean gap from the best class to the next ones minus their mean spread" (with two classes, the raw gap
E_(1) − E_(0), since the normalised one is constant). A cell unlike every class has no
class that stands out (small ζ), so ``anomaly_score = −ζ`` is high for anomalies.

Code layout
-----------
:mod:`.config` (:class:`ClassifierConfig`, torch-free) · :mod:`.draw_plan` (seeded per-image draws, the adaptive
strategies' decisions) · :mod:`.errors` (:func:`estimate_errors`, :func:`replay_strategy`) · :mod:`.scores` (softmax,
ζ, temperature fit, results table) · :mod:`.novelty` (anomaly scores against a class's validation cells) · :mod:`.texture` (the 128-px stage's evidence) ·
:mod:`.batch` (arrays, files, resumable sharded folders) · :mod:`.explain`
(heat maps) · :mod:`.triage` (accept / review / flag from classification tables, torch-free). The commands are in
:mod:`cytomodel.cli.classify` and :mod:`cytomodel.cli.triage`.
"""
from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    **dict.fromkeys(["ClassifierConfig", "STRATEGIES", "SELECTIONS", "WEIGHTINGS", "ERROR_REGIONS", "LAB_CONDITIONS",
                     "PLAN_LENGTH", "SCALE_FIELDS"], "config"),
    **dict.fromkeys(["draw_plan", "image_seed", "dihedral"], "draw_plan"),
    **dict.fromkeys(["ErrorEstimate", "estimate_errors", "replay_strategy"], "errors"),
    **dict.fromkeys(["softmax_neg", "zeta_scores", "anomaly_scores", "fit_temperature", "nll_of", "model_temperature",
                     "results_frame", "scores_frame", "rescored", "calibrate_model"], "scores"),
    **dict.fromkeys(["classify_arrays", "classify_images", "classify_folder", "load_images_for", "list_inputs",
                     "classified", "partial_state", "read_table", "write_table"], "batch"),
    **dict.fromkeys(["Explanation", "explain_image", "save_overlay"], "explain"),
    **dict.fromkeys(["TriageRule", "fit_triage", "apply_triage", "run_triage", "read_classification_table"],
                    "triage"),
    **dict.fromkeys(["novelty_statistic", "fit_reference", "standardise", "model_reference", "record_reference",
                     "anomaly_of", "fit_score_reference", "pooled_classes", "MIN_CLASS_CELLS"], "novelty"),
    **dict.fromkeys(["TextureScorer", "null_levels", "texture_errors", "texture_gain", "texture_levels"],
                   "texture"),
    "BaselinePart": "baseline_part",
})
