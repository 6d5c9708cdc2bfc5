"""The nutpie path compiles its own log-density: it must equal PyMC's, gradient included (a PyTensor rewrite once
made the numba-compiled meta-d′ gradient silently wrong while C raised; docs/analysis.md)."""
import numpy as np
import pytest

from analysis import prepare
from analysis.fitting import SamplerConfig, fit_model, set_quiet
from analysis.models import build_metad_model, build_sdt_model
from analysis.nutpie_backend import compile_logp
from analysis.simulate import RaterProfile, simulate_study
from cytocore.validation import validate_responses

set_quiet(True)


def _check_against_pymc(model, backend, n_points=3):
    c = compile_logp(model, backend)
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    names = [model.rvs_to_values[v].name for v in model.free_RVs]
    rng = np.random.default_rng(0)
    for _ in range(n_points):
        q = c.initial_point(0) + rng.normal(0, 0.3, c.n_dim)
        point, i = {}, 0
        for n, s in zip(names, c.shapes):
            k = int(np.prod(s, dtype=int))
            point[n] = q[i:i + k].reshape(s)
            i += k
        lp, g = c.logp_dlogp(q)
        assert lp == pytest.approx(float(logp(point)), rel=1e-9)
        np.testing.assert_allclose(g, dlogp(point), rtol=1e-7, atol=1e-9)


def test_metad_log_density_and_gradient_equal_pymcs():
    cS1 = np.array([[30, 20, 10, 5, 3, 2, 1, 0], [20, 20, 20, 20, 20, 20, 20, 20], [40, 20, 10, 5, 3, 2, 2, 1]])
    cS2 = np.array([[0, 1, 2, 3, 5, 10, 20, 30], [20, 20, 20, 20, 20, 20, 20, 21], [1, 1, 2, 3, 5, 10, 20, 50]])
    m, _ = build_metad_model(cS1, cS2, ["a", "b", "model"], 4, pooled=[True, True, False])
    assert m.metad_info["no_M_raters"] == ["b"] and m.backend_hint == "c"
    _check_against_pymc(m, "c")


@pytest.mark.slow
def test_sdt_numba_log_density_and_gradient_equal_pymcs_and_nutpie_samples_it():
    df = simulate_study(3, 40, ("a", "b"), seed=2, profile=RaterProfile(d_prime=1.0))
    a = prepare.sdt_arrays(validate_responses(df).data)
    m, _ = build_sdt_model(a["y"], a["s"], a["rater_idx"], a["stim_idx"], a["raters"], a["stimuli"],
                           obs_ids=a["obs_ids"])
    _check_against_pymc(m, "numba")
    f = fit_model("sdt_small", m, SamplerConfig(draws=200, tune=200, chains=2, cores=1, max_reruns=0))
    post = f.idata.posterior
    assert (post.sizes["chain"], post.sizes["draw"]) == (2, 200) and {"d", "acc_population"} <= set(post)
    assert list(f.idata.constant_data["rater_idx"].coords["obs"].values[:2]) == a["obs_ids"][:2]
    assert f.info["backend"] == "numba" and f.info["compile_s"] > 0 and f.info["sample_s"] > 0
