"""05 · beta-VAE and disentanglement, KL warm-up, posterior collapse and active units."""

from .cells import answer, code, imports, md, solution, tests

CELLS = [
    md(r'''
    # 05 · β-VAE, KL warm-up, posterior collapse

    The VAE's loss weighs its two terms equally. The **β-VAE** (Higgins et al., 2017) weighs the KL by $\beta$:

    $$L_\beta = \mathbb{E}_x\Big[\, \mathbb{E}_q\big[-\log p(x \mid h)\big]
      + \beta\, \mathrm{KL}\big(q(h \mid x)\,\|\,\mathcal{N}(0, I)\big) \Big].$$

    $\beta > 1$ makes every nat of information in the code more expensive. The model then spends its budget on
    the few factors that explain the most pixels and, since the prior's dimensions are independent, tends to
    give each factor its own dimension: the code becomes more *disentangled*, the reconstructions blurrier.

    The price of information can also be too high. **Posterior collapse**: a dimension whose KL is not worth its
    cost gets $q(h_j \mid x) = \mathcal{N}(0, 1)$ for every $x$; it carries nothing and the decoder ignores it.
    Early in training the decoder is poor, the KL term is easy to reduce, and dimensions can collapse before
    they become useful. **KL warm-up** (Bowman et al., 2016; Sønderby et al., 2016) multiplies the KL term by a
    weight rising from 0 to 1 over the first epochs (`vn.train(..., beta_warmup=epochs)`).

    Two measures of what is in use: the KL per dimension (notebook 04), and **active units** (Burda et al.,
    2016), the dimensions whose posterior mean moves with the input,

    $$A = \#\{\, j : \operatorname{Var}_x\big(\mathbb{E}_q[h_j \mid x]\big) > 0.01 \,\}.$$

    All numbers below compare models on the plain ELBO ($\beta = 1$), whatever $\beta$ they were trained with.
    In fast mode the models see a thousand digits for one epoch or two; otherwise all of MNIST, 10 epochs per
    model of the sweep and 15 for the warm-up comparison, with a 256-unit hidden layer: enough for the trends,
    which are clearer still on longer runs. The collapse section reuses the sweep's models.
    '''),
    imports("exercises", inspect=False, pyplot=False),
    code('''
        data = tutorial.load_mnist(n_train=tutorial.pick(fast=1000, full=None),
                                   n_test=tutorial.pick(fast=500, full=None))
        epochs, hidden = tutorial.pick(fast=1, full=10), tutorial.pick(fast=(128,), full=(256,))
        print(data, f"; {epochs} epoch(s), hidden layers {hidden}")
    '''),
    md(r'''
    ## A sweep over β

    `vn.explore.beta_sweep` trains one VAE per $\beta$ from the same initial weights on the same batches, so
    $\beta$ is the only difference. `vn.evaluation.evaluate` gives each model's negative ELBO, its two parts and
    its active units on the test set.
    '''),
    code('''
        betas = (0.5, 1.0, 4.0, 16.0)
        sweep = vn.explore.beta_sweep(betas=betas, x_train=data.x_train, epochs=epochs, latent_dim=10,
                                      hidden_dims=hidden, batch_size=100, seed=0)
        print(f"{'beta':>6} {'-ELBO':>9} {'reconstruction':>15} {'KL':>7} {'active units':>13}")
        results = {}
        for r in sweep:
            results[r.beta] = vn.evaluation.evaluate(r.model, data.x_test, iwae_samples=0)
            e = results[r.beta]
            print(f"{r.beta:6g} {e['neg_elbo']:9.2f} {e['reconstruction']:15.2f} {e['kl']:7.2f} "
                  f"{e['active_units']:>8} / {e['latent_dim']}")
        assert results[16.0]["kl"] < results[0.5]["kl"]        # a dearer KL buys less information
    '''),
    code('''
        traversals = [vn.explore.traversal(r.model, data.x_test[0], dims=5, x_for_kl=data.x_test) for r in sweep]
        vn.plots.beta_sweep_figure([r.beta for r in sweep], traversals)
    '''),
    md(r'''
    Read the figure column by column: as $\beta$ grows, fewer dimensions keep a large KL, the others fall to
    zero (their traversal rows stop changing), and the remaining ones vary the image more cleanly, at the cost
    of detail.

    ## Active units and the KL per dimension

    A collapsed dimension shows up in both measures: its posterior mean does not move with $x$ and its KL is
    near 0. Plotted for every dimension of every model of the sweep:
    '''),
    code('''
        fig, ax = vn.plots.subplots(figsize=(5.5, 4))
        for r in sweep:
            _, variances = vn.evaluation.active_units(r.model, data.x_test)
            kl = vn.explore.kl_per_dim(r.model, data.x_test)
            ax.scatter(variances, kl, label=f"beta = {r.beta:g}", alpha=0.8)
        ax.axvline(0.01, color="k", ls=":", label="active-unit threshold")
        ax.set(xscale="log", xlabel="Var_x(mu_j(x))", ylabel="KL_j (nats)", title="One point per latent dimension")
        ax.legend(fontsize="small")
        fig
    '''),
    md(r'''
    ## KL warm-up

    Two VAEs with the same weights and batches, one trained with the full KL from the first step and one whose
    KL weight rises linearly to 1 over the first epochs. The history records the weight reached at each
    epoch's end; once it is 1 both optimize the same objective.
    '''),
    code('''
        warm_epochs = tutorial.pick(fast=3, full=15)
        warmup = tutorial.pick(fast=2, full=5)
        runs = {}
        for name, beta_warmup in (("no warm-up", 0), (f"warm-up over {warmup} epoch(s)", warmup)):
            model = vn.VAE(hidden_dims=hidden, latent_dim=32, seed=0)
            history = vn.train(model, data.x_train, data.x_test, epochs=warm_epochs, batch_size=100,
                               beta_warmup=beta_warmup, seed=0, progress=False)
            runs[name] = (model, history)
            print(name)
            every = max(1, warm_epochs // 8)
            for rec in history:
                if rec["epoch"] % every == 0 or rec["epoch"] in (1, warmup, warm_epochs):
                    print(f"  epoch {rec['epoch']:3d}: KL weight {rec['kl_weight']:.2f}, train KL {rec['kl']:6.2f}, "
                          f"test -ELBO {rec['val_reconstruction'] + rec['val_kl']:8.2f}")
        for name, (model, _) in runs.items():
            count, _ = vn.evaluation.active_units(model, data.x_test)
            print(f"{name}: {count} active units of {model.latent_dim}")
        assert runs["no warm-up"][1][-1]["kl_weight"] == 1.0
    '''),
    code('''
        fig, ax = vn.plots.subplots(figsize=(6, 3.5))
        for name, (_, history) in runs.items():
            ax.plot([r["epoch"] for r in history], [r["kl"] for r in history], "o-", label=name)
        ax.set(xlabel="epoch", ylabel="train KL (nats)", title="The KL term with and without warm-up")
        ax.legend()
        fig
    '''),
    md(r'''
    ## Forcing a collapse

    Posterior collapse is easiest to see at its extreme, the sweep's largest $\beta$. Most dimensions, or all,
    carry next to nothing, and the whole code carries at most a few nats (the cell prints them, beside $\beta =
    1$'s): enough for the rough shape of a digit at best, never its details. The reconstructions are blurred, and
    they differ from one another far less than the inputs do: the cell measures the spread across images, pixel by
    pixel, of the inputs and of each model's reconstructions. How many digits stay recognizable depends on the run
    (in fast mode the models have seen a thousand images once); the blur and the shrunken spread do not.
    '''),
    code('''
        collapsed, plain = sweep[-1].model, next(r.model for r in sweep if r.beta == 1.0)
        kl, kl_plain = vn.explore.kl_per_dim(collapsed, data.x_test), vn.explore.kl_per_dim(plain, data.x_test)
        print(f"beta = {sweep[-1].beta:g}: KL per dimension", np.round(kl, 2), f"total {kl.sum():.1f} nats")
        print(f"beta = 1: total KL {kl_plain.sum():.1f} nats")
        x_in, x_out = vn.explore.reconstructions(collapsed, data.x_test[:200])
        _, x_plain = vn.explore.reconstructions(plain, data.x_test[:200])
        spread = {name: float(np.mean(np.std(images, axis=0))) for name, images in
                  (("inputs", x_in), ("beta = 1", x_plain), (f"beta = {sweep[-1].beta:g}", x_out))}
        print("spread across 200 images (mean over pixels of the standard deviation):",
              {k: round(v, 3) for k, v in spread.items()})
        assert kl.sum() < kl_plain.sum() / 2                     # the code carries far less
        assert spread[f"beta = {sweep[-1].beta:g}"] < 0.8 * spread["inputs"]   # the reconstructions vary less
        vn.plots.reconstructions_figure(x_in[:10], x_out[:10],
                                        title=f"beta = {sweep[-1].beta:g}: inputs above reconstructions")
    '''),
    md(r'''
    ## A collapse nobody asked for: dead ReLUs

    At $\beta = 1$ a model can collapse too, and not because information is dear. Notebook 07's convolutional VAE
    (the Keras example) did, on all of MNIST, in its first epoch: every one of the 16 units of the `Dense(16,
    relu)` layer in front of its two heads was 0 for every test image (measured: test $-$ELBO 206.7 nats, KL
    0.008, the decoder drawing the mean digit; README, "MLP, CNN and RNN encoders and decoders"). A ReLU unit that is 0
    for every input also passes back a gradient of 0, so nothing can revive it. With all of them dead,
    $\mu(x)$ and $\log \sigma^2(x)$ no longer depend on $x$; the KL then pulls them to the prior, the decoder
    learns to draw the average digit, and the model has collapsed at $\beta = 1$.

    The cell below builds that situation on purpose in a small VAE: a hidden bias of $-3$ puts every ReLU unit
    below zero for every image at the start. Trained as it is, the ReLU model never recovers. The same start
    with a leaky ReLU (slope 0.01 below zero) does: a small gradient still reaches the dead units. Notebook
    07's cure was a KL warm-up, which keeps the encoder's units alive while the decoder is still poor.
    '''),
    code('''
        dead_epochs = tutorial.pick(fast=10, full=2)
        for activation in ("relu", "leaky_relu"):
            model = vn.VAE(hidden_dims=(64,), latent_dim=8, activation=activation, seed=0)
            model.params["enc1.b"][...] = -3.0            # every hidden unit below zero for every image
            history = vn.train(model, data.x_train, data.x_test, epochs=dead_epochs, batch_size=50, seed=0,
                               progress=False)
            alive = int(np.sum(np.any(data.x_test @ model.params["enc1.W"] + model.params["enc1.b"] > 0, axis=0)))
            count, _ = vn.evaluation.active_units(model, data.x_test)
            rec = history[-1]
            print(f"{activation:10s}: {alive:2d} of 64 hidden units alive after training, {count} active units "
                  f"of 8, test KL {rec['val_kl']:.3f} nats, test -ELBO {rec['val_loss']:.2f}")
            if activation == "relu":
                assert alive == 0 and count == 0          # no gradient reaches a dead ReLU: it stays dead
            else:
                assert alive > 0 and count > 0            # the leaky slope lets the units come back
    '''),
    md(r'''
    ## Exercises

    ### Exercise 1 (graded): free bits, a cure for collapse, and its gradient

    Kingma et al. (2016) keep dimensions from collapsing with **free bits**: the KL term of a batch is replaced
    by a sum over dimensions in which each dimension's KL, averaged over the batch, is charged at least
    $\lambda$ nats:

    $$\mathrm{KL}_\lambda = \sum_j \max\big(\lambda,\ \overline{\mathrm{KL}}_j\big), \qquad
      \overline{\mathrm{KL}}_j
      = \frac{1}{N}\sum_n \tfrac12\big(\mu_{nj}^2 + \sigma_{nj}^2 - 1 - \log\sigma_{nj}^2\big).$$

    A dimension below $\lambda$ costs a constant, so no gradient pushes it towards the prior: it is free to carry
    up to $\lambda$ nats. Write `free_bits_kl(mu, log_var, lam)` returning the value (a float) and its gradient
    `(dmu, dlog_var)`, (N, Z) each. The library's KL, its gradient, the fused kernels, the models and the
    finite-difference helpers are switched off while the test runs your function. The test checks the gradient by
    finite differences (float64), away from the kink at $\overline{\mathrm{KL}}_j = \lambda$.
    '''),
    solution("nb05-free-bits", '''
        def free_bits_kl(mu, log_var, lam):
            """sum_j max(lam, mean_n KL_nj). mu, log_var: (N, Z) -> (value, dmu (N, Z), dlog_var (N, Z))."""
            ### BEGIN SOLUTION
            N = len(mu)
            var = np.exp(log_var)
            kl_j = np.mean(0.5 * (mu ** 2 + var - 1 - log_var), axis=0)         # (Z,)
            charged = (kl_j > lam).astype(mu.dtype)                             # only these get a gradient
            return float(np.sum(np.maximum(kl_j, lam))), charged * mu / N, charged * (var - 1) / (2 * N)
            ### END SOLUTION
    '''),
    tests("nb05-free-bits-tests", 4, '''
        banned = ("losses.gaussian_kl", "losses.gaussian_kl_backward", "kernels.reparam_kl_forward",
                  "kernels.reparam_kl_backward", "explore.kl_per_dim", *exercises.MODELS, *exercises.FINITE_DIFFERENCES)
        yours = exercises.graded(free_bits_kl, *banned)
        rng = np.random.default_rng(0)
        scale = np.array([0.0, 0.3, 1.0, 2.0, 0.1])                 # dimension 0 collapsed: mu = 0, sigma = 1
        mu = rng.standard_normal((6, 5)) * scale
        log_var = rng.standard_normal((6, 5)) * scale / 2 - scale
        lam = 0.25
        kl_j = np.mean(0.5 * (mu ** 2 + np.exp(log_var) - 1 - log_var), axis=0)
        assert np.abs(kl_j - lam).min() > 1e-3                      # away from the kinks
        value, dmu, dlog_var = yours(mu, log_var, lam)
        assert abs(value - np.maximum(kl_j, lam).sum()) < 1e-12 * value, "the value"
        num_mu = vn.gradcheck.numerical_gradient(lambda m: yours(m, log_var, lam)[0], mu.copy())
        num_lv = vn.gradcheck.numerical_gradient(lambda v: yours(mu, v, lam)[0], log_var.copy())
        err = max(vn.gradcheck.array_rel_error(dmu, num_mu), vn.gradcheck.array_rel_error(dlog_var, num_lv))
        print(f"KL per dimension {np.round(kl_j, 3)}; relative error of the gradient {err:.1e}")
        assert err < 1e-7
        assert np.all(dmu[:, kl_j < lam] == 0) and np.all(dlog_var[:, kl_j < lam] == 0), "free below lambda"
        ### BEGIN HIDDEN TESTS
        mu2, lv2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
        value0, dmu0, dlv0 = yours(mu2, lv2, 0.0)                  # lambda = 0: the plain KL, averaged
        assert abs(value0 - vn.losses.gaussian_kl(mu2, lv2).mean()) < 1e-10 * value0
        ref_mu, ref_lv = vn.losses.gaussian_kl_backward(np.full(4, 0.25), mu2, lv2)
        assert vn.gradcheck.array_rel_error(dmu0, ref_mu) < 1e-10
        assert vn.gradcheck.array_rel_error(dlv0, ref_lv) < 1e-10
        ### END HIDDEN TESTS
    '''),
    md(r'''
    ### Exercise 2 (graded by hand): the two measures

    Why does a collapsed dimension have both $\mathrm{KL}_j \approx 0$ and $\operatorname{Var}_x(\mu_j) \approx 0$?
    Can a dimension have $\operatorname{Var}_x(\mu_j) > 0.01$ and still a small KL? What would it mean?
    '''),
    answer("nb05-measures", 2, r'''
    $\mathrm{KL}_j = \mathbb{E}_x\big[\tfrac12(\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2)\big]$ is a sum of two
    non-negative parts, $\tfrac12\mu_j^2$ and $\tfrac12(\sigma_j^2 - 1 - \log\sigma_j^2)$. It is near 0 only if
    $\mu_j(x) \approx 0$ and $\sigma_j(x) \approx 1$ for (almost) every $x$, and then $\mu_j$ cannot vary with
    $x$: $\operatorname{Var}_x(\mu_j) \le \mathbb{E}_x[\mu_j^2] \le 2\,\mathrm{KL}_j$. So a small KL forces a
    small variance. The converse is weaker: with $\operatorname{Var}(\mu_j) = 0.02$ the KL is at least 0.01
    nats, small but not zero. Such a dimension is *active* by Burda's threshold while carrying very little
    information, e.g. a dimension in the middle of collapsing, or one that encodes a faint factor; the
    threshold is a convention, and the KL per dimension is the finer measure.
    '''),
    md(r'''
    ### Exercise 3 (not graded)

    With the full data, train with $\beta = 4$ for 30 epochs and look at the traversal: name the factor each
    active dimension controls. Then train a model with `latent_dim=64` with and without `beta_warmup=10` and
    compare their active units.
    '''),
]
