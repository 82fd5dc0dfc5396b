"""The importance-weighted bound as a training objective: gradients, what k = 1 means, the bound tightening with k,
the k-sample ELBO, training, checkpoints and the command line (vae_numpy/iwae.py, VAE(objective=..., k=...))."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from test_cli_train import TINY, cli

import vae_numpy as vn
from vae_numpy import iwae
from vae_numpy.gradcheck import TOL, check_model
from vae_numpy.losses import LOG_2PI

LIKELIHOODS = {"bernoulli": dict(likelihood="bernoulli"),
               "gaussian-fixed": dict(likelihood="gaussian", decoder_sigma=0.7),
               "gaussian-learned": dict(likelihood="gaussian", decoder_sigma="learned")}


def small(objective="iwae", k=5, lik="bernoulli", beta=1.0, seed=1, **kw):
    return vn.VAE(6, (7, 5), 3, beta=beta, dtype="float64", seed=seed, objective=objective, k=k,
                  **{**LIKELIHOODS[lik], **kw})


def data(n=4, seed=0):
    return np.random.default_rng(seed).random((n, 6))


# ------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("lik", sorted(LIKELIHOODS))
@pytest.mark.parametrize("k", [1, 2, 5])
def test_iwae_gradients_match_central_differences(k, lik):
    """Every parameter, float64, fixed eps (N, k, Z), relative error < 1e-7."""
    model, x = small("iwae", k, lik), data()
    eps = np.random.default_rng(k).standard_normal((4, k, 3))
    report = check_model(model, x, eps=eps)
    report.assert_ok()
    assert report.max_error < TOL and len(report.rows) == len(model.params)


@pytest.mark.parametrize("lik", sorted(LIKELIHOODS))
@pytest.mark.parametrize("objective,k,beta", [("iwae", 5, 0.5), ("iwae", 2, 3.0), ("elbo", 2, 1.0),
                                              ("elbo", 5, 0.5)])
def test_beta_and_k_sample_elbo_gradients(objective, k, beta, lik):
    model, x = small(objective, k, lik, beta=beta), data(5, seed=3)
    check_model(model, x, eps=np.random.default_rng(7).standard_normal((5, k, 3))).assert_ok()


def test_gradients_with_kl_warmup_weight():
    model, x = small("iwae", 3), data()
    model.kl_weight = 0.3
    check_model(model, x, eps=np.random.default_rng(2).standard_normal((4, 3, 3))).assert_ok()


# ------------------------------------------------------------------------------------ what k = 1 means
def _by_hand(model, x, eps):
    """rec + log q(h | x) - log p(h) per example, from the densities' textbook formulas (float64)."""
    mu, log_var = model.encode(x)
    var = np.exp(log_var)
    h = mu + np.sqrt(var) * eps
    out, log_var_x, _ = model._decoder_forward(h)
    if model.likelihood == "bernoulli":
        rec = vn.losses.bernoulli_nll(out, x)
    else:
        sigma = 1.0 if model.decoder_sigma == "learned" else model.decoder_sigma
        rec = vn.losses.gaussian_nll(x, out, log_var_x, sigma)
    log_q = np.sum(-0.5 * ((h - mu) ** 2 / var + np.log(var) + LOG_2PI), axis=1)
    log_p = np.sum(-0.5 * (h * h + LOG_2PI), axis=1)
    return rec, log_q - log_p


@pytest.mark.parametrize("lik", sorted(LIKELIHOODS))
def test_k1_is_reconstruction_plus_the_sampled_kl_for_the_given_eps(lik):
    model, x = small("iwae", 1, lik), data(6)
    eps = np.random.default_rng(4).standard_normal((6, 3))
    loss = model.forward(x, eps)                       # (N, Z) is accepted for k = 1 ...
    assert model.forward(x, eps[:, None, :]) == loss   # ... and means the same as (N, 1, Z)
    rec, kl = _by_hand(model, x, eps)
    np.testing.assert_allclose(loss, np.mean(rec + kl), rtol=1e-12)
    np.testing.assert_allclose(model.last["reconstruction"], rec.mean(), rtol=1e-12)
    np.testing.assert_allclose(model.last["kl"], kl.mean(), rtol=1e-12)


def test_k1_equals_the_closed_form_elbo_in_expectation():
    """Paired draws (the same eps for both): the difference is KL estimate - KL, of mean 0.

    G = 40 groups of 25 images x 20 draws each: the mean difference over the groups must lie within 4 standard
    errors of 0 (the standard error from the spread of the group means), and that standard error must be small
    beside the KL itself (the test can tell a biased estimate apart).
    """
    x, _ = vn.datasets.load_dataset("mnist-5k", "test")
    x = vn.datasets.to_unit(vn.datasets.flatten(x[:25]), "float64")
    model = vn.VAE(784, (32,), 4, dtype="float64", seed=3, objective="iwae", k=1)
    elbo_model = vn.VAE(784, (32,), 4, dtype="float64", seed=3)
    for m in (model, elbo_model):   # a posterior narrower than the prior: a KL of several nats
        m.params["enc_log_var.b"][...] = -3.0
    xr = np.repeat(x, 20, axis=0)
    rng = np.random.default_rng(11)
    diffs, kls = [], []
    for _ in range(40):
        eps = rng.standard_normal((len(xr), 4))
        diffs.append(model.forward(xr, eps) - elbo_model.forward(xr, eps))
        assert model.last["reconstruction"] == pytest.approx(elbo_model.last["reconstruction"], rel=1e-12)
        kls.append(elbo_model.last["kl"])
    diffs = np.array(diffs)
    se = diffs.std(ddof=1) / np.sqrt(len(diffs))
    assert abs(diffs.mean()) < 4 * se
    assert se < 0.01 * np.mean(kls) and np.mean(kls) > 2


def test_k_sample_elbo_is_the_mean_of_single_sample_elbos():
    model, x = small("elbo", 3, "gaussian-learned"), data()
    eps = np.random.default_rng(5).standard_normal((4, 3, 3))
    loss = model.forward(x, eps)
    one = small("elbo", 1, "gaussian-learned")
    singles = [one.forward(x, eps[:, j]) for j in range(3)]
    np.testing.assert_allclose(loss, np.mean(singles), rtol=1e-12)
    np.testing.assert_allclose(model.last["kl"], one.last["kl"], rtol=1e-12)


def test_iwae_loss_is_below_reconstruction_plus_kl_estimate():
    """Jensen: -log mean_j w_j <= mean_j -log w_j, per example and so for the batch (beta = 1)."""
    model, x = small("iwae", 8), data(6)
    loss = model.forward(x, np.random.default_rng(0).standard_normal((6, 8, 3)))
    assert loss <= model.last["reconstruction"] + model.last["kl"]
    assert set(model.last) == {"loss", "reconstruction", "kl"} and model.last["loss"] == loss


# ------------------------------------------------------------------------------ the bound tightens
@pytest.fixture(scope="module")
def trained():
    x, _ = vn.datasets.load_dataset("mnist-5k", "train")
    model = vn.VAE(784, (64,), 8, seed=0)
    vn.train(model, x, epochs=3, batch_size=100, seed=0, progress=False)
    x_test, _ = vn.datasets.load_dataset("mnist-5k", "test")
    return model, vn.datasets.to_unit(vn.datasets.flatten(x_test[:400]))


def _mean_bound(model, x, k, seed):
    model.objective, model.k = "iwae", k
    rng = np.random.default_rng(seed)
    total = 0.0
    for start in range(0, len(x), 100):
        xb = x[start:start + 100]
        total += model.forward(xb, rng.standard_normal((len(xb), k, model.latent_dim))) * len(xb)
    model.objective, model.k = "elbo", 1
    return total / len(x)


def test_the_bound_tightens_with_k(trained):
    model, x = trained
    l1, l5, l50 = (_mean_bound(model, x, k, seed) for k, seed in ((1, 1), (5, 2), (50, 3)))
    assert l1 > l5 + 0.5 > l50 + 1.0, (l1, l5, l50)
    # the evaluation's estimator (evaluation.log_likelihood, its own draws) is the same bound: -log p(x) ~ L_k
    ll = vn.evaluation.log_likelihood(model, x, n_samples=50, seed=4)
    assert -ll == pytest.approx(l50, abs=0.5)


# ------------------------------------------------------------------------------ API, training, files
def test_eps_shapes_and_settings_are_checked():
    model, x = small("iwae", 5), data()
    for bad in (np.zeros((4, 3)), np.zeros((4, 4, 3)), np.zeros((3, 5, 3))):
        with pytest.raises(vn.ConfigError, match=r"expected \(4, 5, 3\)"):
            model.forward(x, bad)
    assert np.isfinite(model.forward(x))      # eps drawn from the model's generator: (N, k, Z)
    assert model.eps_shape(7) == (7, 5, 3) and vn.VAE(k=1).eps_shape(7) == (7, 20)
    for kwargs in ({"objective": "iwea"}, {"k": 0}, {"k": 2.5}, {"k": True}):
        with pytest.raises(vn.ConfigError):
            vn.VAE(**kwargs)


def test_training_on_the_iwae_bound_is_deterministic_and_resumes_bit_for_bit(tmp_path):
    x, _ = vn.datasets.load_dataset("mnist-5k", "train")
    x = x[:600]

    def fresh():
        return vn.VAE(784, (32,), 4, seed=0, objective="iwae", k=3)

    a = fresh()
    history = vn.train(a, x, epochs=2, batch_size=100, seed=5, progress=False, binarize="dynamic")
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    b = fresh()
    vn.train(b, x, epochs=1, batch_size=100, seed=5, progress=False, binarize="dynamic",
             checkpoint=tmp_path / "m.npz")
    c, _ = vn.resume(tmp_path / "m.npz", x, epochs=2, progress=False)
    assert (c.objective, c.k) == ("iwae", 3)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], c.params[name])


def test_checkpoints_keep_the_objective_and_old_files_load_as_the_elbo(tmp_path):
    model = vn.VAE(784, (16,), 2, objective="iwae", k=7)
    loaded = vn.load_model(model.save(tmp_path / "m.npz"))
    assert (loaded.objective, loaded.k) == ("iwae", 7) and loaded.config() == model.config()
    with np.load(tmp_path / "m.npz") as z:     # a file written before the keys existed
        entries = dict(z)
    config = json.loads(str(entries["config"]))
    del config["objective"], config["k"]
    entries["config"] = np.array(json.dumps(config))
    np.savez(tmp_path / "old.npz", **entries)
    old = vn.load_model(tmp_path / "old.npz")
    assert (old.objective, old.k) == ("elbo", 1)


def test_log_mean_exp_is_stable():
    log_w = np.array([[-1000.0, -1001.0, -1002.0], [5.0, 5.0, 5.0], [-np.inf, -np.inf, -np.inf]])
    out = iwae.log_mean_exp(log_w)
    expected0 = -1000.0 + np.log((1 + np.exp(-1) + np.exp(-2)) / 3)
    np.testing.assert_allclose(out[:2], [expected0, 5.0], rtol=1e-15)
    assert out[2] == -np.inf
    np.testing.assert_allclose(iwae.normalized_weights(log_w[:2]).sum(axis=1), 1.0, rtol=1e-15)


def test_cli_trains_on_the_iwae_bound(tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = cli("train", *TINY, "--epochs", "1", "--objective", "iwae", "--k", "5", "--out", out)
    assert code == 0, stderr
    assert "objective iwae k=5" in stdout
    loaded = vn.load_model(out / "model.npz")
    assert (loaded.objective, loaded.k) == ("iwae", 5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"]["objective"] == "iwae" and metrics["config"]["model"]["k"] == 5
    code, _, stderr = cli("train", "--resume", out / "model.npz", "--epochs", "2", "--k", "3")
    assert code == 2 and "--k cannot change when resuming" in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flags,message", [(["--k", "0"], "positive integer"), (["--k", "2.5"], "positive integer"),
                                           (["--model", "ae", "--k", "2"], "apply to a VAE"),
                                           (["--model", "ae", "--objective", "iwae"], "apply to a VAE"),
                                           (["--objective", "bound"], "invalid choice")])
def test_cli_refuses_bad_objective_settings(tmp_path, flags, message):
    code, stdout, stderr = cli("train", *TINY, "--epochs", "1", *flags, "--out", tmp_path / "run")
    assert code == 2 and message in stderr, stderr
    assert not (tmp_path / "run" / "model.npz").exists()


# ------------------------------------------------------------------------------------ memory for k
def test_a_k_too_large_for_the_memory_is_refused_before_anything_is_allocated(monkeypatch):
    """objective="iwae" decodes N k codes at once: the step's memory is checked first, naming k and the fix."""
    import vae_numpy.models as models
    model = small("iwae", 5)
    need = model.k_step_bytes(4)
    assert need >= 4 * 5 * (5 * 6) * 8          # at least the five (N k, D) float64 arrays
    monkeypatch.setattr(models, "available_memory", lambda: need - 1)
    before = dict(model._ws)
    with pytest.raises(vn.ConfigError, match=r"k=5 on a batch of 4 decodes 20 codes .* lower k or the batch"):
        model.forward(data())
    assert model._ws.keys() == before.keys()      # no workspace was allocated for the refused step
    with pytest.raises(vn.ConfigError, match="lower k"):
        vn.train(model, data(8), epochs=1, batch_size=4, progress=False)
    monkeypatch.setattr(models, "available_memory", lambda: need)
    assert np.isfinite(model.forward(data()))      # exactly enough is enough
    monkeypatch.setattr(models, "available_memory", lambda: None)   # unknown (no /proc/meminfo): not refused
    model.k = 7
    assert np.isfinite(model.forward(data()))


ARCHS_SMALL = {"mlp": dict(hidden_dims=(16,)), "conv": dict(channels=(2, 3), dense=4), "rnn": dict(state_size=8)}


@pytest.mark.parametrize("arch", sorted(ARCHS_SMALL))
def test_the_memory_estimates_are_lower_bounds_within_3x_of_the_real_peak(arch):
    """k_step_bytes and the decode estimate against tracemalloc's peak (NumPy reports its allocations to it):
    never above it (a step that fits is never refused), and not far below it (the conv and rnn estimates once
    missed im2col's columns and the recurrent gates, 4-5x too low)."""
    import tracemalloc

    def make(k):
        return vn.VAE(64, arch=arch, latent_dim=2, objective="iwae", k=k, seed=0, **ARCHS_SMALL[arch])
    x = np.random.default_rng(0).random((4, 64)).astype(np.float32)
    warm = make(50)
    warm.forward(x), warm.backward(), warm.decode(np.zeros((3, 2), np.float32))   # kernels compiled and cached
    model = make(50)
    tracemalloc.start()
    try:
        model.forward(x)
        model.backward()
        step = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        model.decode(np.zeros((500, 2), np.float32))
        decode = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert model.k_step_bytes(4) <= step <= 3 * model.k_step_bytes(4), (step, model.k_step_bytes(4))
    assert 500 * model._decode_row_bytes() <= decode <= 3 * 500 * model._decode_row_bytes()


def test_available_memory_is_the_free_memory_in_bytes_here():
    from vae_numpy._validate import available_memory
    have = available_memory()
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("no /proc/meminfo: the free memory is not known on this system")
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert isinstance(have, int) and 2**24 < have <= total      # bytes, not kB: more than 16 MiB, less than all


def test_available_memory_honours_a_container_limit(monkeypatch):
    """A cgroup's memory limit (v2 memory.max - memory.current) lowers MemAvailable: a container is killed at its
    own limit, not the host's; "max" (no limit) leaves it as it is."""
    from vae_numpy import _validate
    files = {"/sys/fs/cgroup/memory.max": 3 * 2**20, "/sys/fs/cgroup/memory.current": 2**20}
    monkeypatch.setattr(_validate, "_read_int", files.get)
    if os.path.exists("/proc/meminfo"):
        assert _validate.available_memory() == 2 * 2**20
    monkeypatch.setattr(_validate, "_read_int", lambda path: None)
    unlimited = _validate.available_memory()
    assert unlimited is None or unlimited > 2 * 2**20


def test_a_refused_k_names_a_batch_that_fits_when_even_k_1_does_not(monkeypatch):
    import vae_numpy.models as models
    model = small("iwae", 5)
    per_row = model.k_step_bytes(1) // 5
    monkeypatch.setattr(models, "available_memory", lambda: 3 * per_row)
    with pytest.raises(vn.ConfigError, match=r"even k=1 needs a batch of at most 3\)"):
        model.forward(data(4))
    monkeypatch.setattr(models, "available_memory", lambda: 4 * 2 * per_row)
    with pytest.raises(vn.ConfigError, match=r"e\.g\. k <= 2 at this batch"):
        model.forward(data(4))
    model.k = 2
    assert np.isfinite(model.forward(data(4)))                   # the k it named fits
    model.k = 3                                                  # a verdict for k=2 does not cover k=3
    with pytest.raises(vn.ConfigError, match="k=3 on a batch of 4"):
        model.forward(data(4))


def test_cli_refuses_a_k_no_machine_can_hold_in_one_line_before_making_the_folder(tmp_path):
    code, stdout, stderr = cli("train", *TINY, "--epochs", "1", "--objective", "iwae", "--k", "10000000",
                               "--out", tmp_path / "run")
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and "k=10000000 on a batch of 256" in stderr, stderr
    assert "lower k or the batch size" in stderr
    assert not (tmp_path / "run").exists()
