"""08 · The importance-weighted bound: L_k tightening with k, and training on it (IWAE) vs the ELBO."""

from .cells import answer, code, imports, md, solution, tests

CELLS = [
    md(r'''
    # 08 · The importance-weighted bound

    The ELBO (notebook 03) bounds $\log p(x)$ with one sample of $q(h \mid x)$. Burda, Grosse and Salakhutdinov
    (2016) average $k$ importance weights inside the logarithm instead:

    $$\mathcal{L}_k(x) = \mathbb{E}_{h_1, \dots, h_k \sim q(h \mid x)}\Big[\log \frac{1}{k} \sum_{j=1}^k w_j\Big],
      \qquad w_j = \frac{p(x \mid h_j)\, p(h_j)}{q(h_j \mid x)}.$$

    $\mathcal{L}_1$ is the ELBO (with the KL estimated from the sample, the same in expectation), and

    $$\mathcal{L}_1 \le \mathcal{L}_2 \le \dots \le \mathcal{L}_k \le \mathcal{L}_{k+1} \le \dots \le \log p(x),
      \qquad \mathcal{L}_k \to \log p(x) \ \text{ as } k \to \infty$$

    (their Theorem 1; when the weights are bounded). Each $\mathcal{L}_k$ is a lower bound on $\log p(x)$: the
    package estimates it with `model.log_likelihood(x, n_samples=k)` (one draw of the $k$ samples per image,
    averaged over images), which is how `vae-numpy evaluate` and the literature measure $\log p(x)$ with
    $k$ = 5,000. `vae_numpy/iwae.py` writes its negative, the loss $-\mathcal{L}_k$, and its gradient.

    $\mathcal{L}_k$ can also be *trained on* (the **IWAE**, `vn.VAE(objective="iwae", k=K)`). Its gradient is
    the average of the single-sample gradients weighted by the normalized weights
    $\tilde w_j = w_j / \sum_i w_i$,

    $$\nabla \mathcal{L}_k = \mathbb{E}\Big[\sum_{j=1}^k \tilde w_j\, \nabla \log w_j\Big]$$

    (with $k = 1$, $\tilde w_1 = 1$: the VAE's gradient). Samples that explain $x$ badly count little, so the
    encoder is no longer punished for every sample it spends on an unlikely code. Burda et al. found that IWAEs
    reach a better $\log p(x)$ than VAEs of the same architecture and use more **active units** (notebook 05),
    more as $k$ grows: the VAE's objective lets latent dimensions collapse to the prior that the IWAE keeps.

    This notebook measures both on one pair of models trained alike, one on the ELBO and one on $\mathcal{L}_5$:
    the paper's architecture (784-200-200-50, tanh) in full mode, on all of MNIST, dynamically binarized
    (`binarize="dynamic"`: a fresh 0/1 draw of every pixel each time an image is used; the test images are
    binarized once), 10 epochs each. In fast mode two thousand embedded digits, a smaller network and a few
    epochs: enough for the bound, not for collapse (see below).
    '''),
    imports("exercises", "iwae", pyplot=False),
    code('''
        print(inspect.getsource(iwae.iwae_bound))
    '''),
    code('''
        data = tutorial.load_mnist(n_train=tutorial.pick(fast=2000, full=None),
                                   n_test=tutorial.pick(fast=500, full=None))
        # the same images as uint8 grey levels, which vn.train binarizes (binarize="dynamic")
        (x_train, _), (x_test, _) = (vn.datasets.load_dataset(data.name, split) for split in ("train", "test"))
        x_train, x_test = x_train[:len(data.x_train)], x_test[:len(data.x_test)]
        epochs = tutorial.pick(fast=5, full=10)
        hidden, latent = tutorial.pick(fast=(128,), full=(200, 200)), 50
        print(f"{data.name}: {len(x_train)} training and {len(x_test)} test images {x_train.shape[1:]} "
              f"{x_train.dtype}; {epochs} epochs, hidden layers {hidden}, {latent} latent units")
    '''),
    md(r'''
    ## Two models: the ELBO and $\mathcal{L}_5$

    Same architecture, same initial weights (`seed=0`), same batches and binarizations (`vn.train(seed=0)`);
    only the objective differs. After every epoch a callback counts the active units on the test images. The
    training losses printed are each model's own objective ($-$ELBO and $-\mathcal{L}_5$), which do not compare:
    the cells after this one put both models on the same scale.
    '''),
    code('''
        models, active = {}, {}
        for name, objective, k in (("VAE, ELBO (k = 1)", "elbo", 1), ("IWAE, k = 5", "iwae", 5)):
            model = vn.VAE(hidden_dims=hidden, latent_dim=latent, activation="tanh", objective=objective, k=k, seed=0)
            active[name] = []
            history = vn.train(model, x_train, epochs=epochs, batch_size=100, binarize="dynamic", seed=0,
                               progress=False, callbacks=[lambda m, h, counts=active[name]: counts.append(
                                   vn.evaluation.active_units(m, x_test, binarize="static")[0])])
            models[name] = model
            print(f"{name}: {sum(r['seconds'] for r in history):5.1f} s, last epoch's train loss "
                  f"{history[-1]['train_loss']:.2f}; active units per epoch {active[name]}")
    '''),
    md(r'''
    ## $\mathcal{L}_k$ tightens with $k$

    For each model, $\mathcal{L}_k$ on the same test images for $k$ from 1 to a few thousand (each $k$ with its own
    draws), beside the ELBO with its closed-form KL (`vn.evaluation.elbo`, one sample per image).
    '''),
    code('''
        ks = tutorial.pick(fast=(1, 2, 5, 10, 20, 50, 100, 200, 500),
                           full=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000))
        x_eval = x_test[:tutorial.pick(fast=200, full=500)]
        bounds, elbos = {}, {}
        for name, model in models.items():
            bounds[name] = np.array([vn.evaluation.log_likelihood(model, x_eval, n_samples=k, seed=1,
                                                                  binarize="static") for k in ks])
            elbos[name] = -vn.evaluation.elbo(model, x_eval, seed=1, binarize="static")["neg_elbo"]
        print(f"{'k':>6}" + "".join(f"{name:>20}" for name in models) + f"{'IWAE - VAE':>12}")
        (vae_name, vae_b), (iwae_name, iwae_b) = bounds.items()
        for i, k in enumerate(ks):
            print(f"{k:6d}" + "".join(f"{b[i]:20.2f}" for b in bounds.values()) + f"{iwae_b[i] - vae_b[i]:12.2f}")
        print(f"{'ELBO':>6}" + "".join(f"{e:20.2f}" for e in elbos.values()))
        for name, b in bounds.items():
            assert b[-1] > b[0] and np.all(np.diff(b) > -0.1), name     # rising with k (up to the estimates' noise)
    '''),
    code('''
        fig, ax = vn.plots.subplots(figsize=(6.5, 4))
        for (name, b), color in zip(bounds.items(), ("C0", "C1")):
            ax.plot(ks, b, "o-", color=color, label=f"{name}: L_k")
            ax.axhline(elbos[name], color=color, ls=":", label=f"{name}: ELBO (closed-form KL)")
        ax.set(xscale="log", xlabel="k (importance samples)", ylabel="L_k (nats per image)",
               title=f"The bound tightens with k ({len(x_eval)} test images, {data.name})")
        ax.legend(fontsize="small", loc="lower right")
        fig
    '''),
    md(r'''
    **Why it rises.** Take $m < k$. The mean of $k$ weights is the average, over all subsets $I$ of $m$ of them,
    of the subset's mean, $\frac1k \sum_j w_j = \mathbb{E}_I\big[\frac1m \sum_{i \in I} w_i\big]$. The logarithm
    is concave, so (Jensen) $\log \frac1k \sum_j w_j \ge \mathbb{E}_I\big[\log \frac1m \sum_{i \in I} w_i\big]$;
    taking the expectation over the samples gives $\mathcal{L}_k \ge \mathcal{L}_m$. And since
    $\mathbb{E}_q[w] = \int p(x, h)\, dh = p(x)$, the mean of the weights converges to $p(x)$ (the law of large
    numbers), so $\mathcal{L}_k \to \log p(x)$. How fast: for large $k$ the gap is about
    $\operatorname{Var}_q(w) / (2k\, p(x)^2)$, so every tenfold $k$ closes about nine tenths of what is left,
    which is why the curve flattens on the log axis. The gap at $k = 1$, $\log p(x) - \text{ELBO} =
    \mathrm{KL}(q(h \mid x) \,\|\, p(h \mid x))$, is what a better $q$ would have closed (notebook 01).

    **Reading the two curves.** The IWAE model's ELBO is no better, usually worse, than the VAE's, yet its
    $\mathcal{L}_k$ for large $k$, the closer estimate of $\log p(x)$, is higher: it spent its capacity on the
    likelihood rather than on making $q$ fit the posterior, and its $q$ is broader (a looser ELBO) because the
    weights forgive the samples that land far from it. The numbers here come from a short run; Burda et al.'s
    Table 1 gives the converged ones (in `README.md`, "What is a good value?").

    ## Active units

    The callback counted, after every epoch, the dimensions whose posterior mean varies over the test images by
    more than 0.01. Below, those counts, and the variances themselves for the trained models, sorted.
    '''),
    code('''
        fig, (left, right) = vn.plots.subplots(1, 2, figsize=(10, 3.8))
        for (name, model), color in zip(models.items(), ("C0", "C1")):
            count, variances = vn.evaluation.active_units(model, x_test, binarize="static")
            left.plot(range(1, epochs + 1), active[name], "o-", color=color, label=name)
            right.plot(range(1, latent + 1), np.sort(variances)[::-1], ".-", color=color,
                       label=f"{name}: {count} active")
            print(f"{name}: {count} of {latent} units active; the smallest variances "
                  f"{np.round(np.sort(variances)[:5], 4)}")
        left.set(xlabel="epoch", ylabel="active units", title=f"Active units of {latent}, per epoch",
                 xticks=range(1, epochs + 1))
        right.axhline(vn.evaluation.ACTIVE_THRESHOLD, color="k", ls=":", label="threshold 0.01")
        right.set(yscale="log", xlabel="latent dimension (sorted)", ylabel="Var_x(mu_j(x))",
                  title="After training")
        left.legend(fontsize="small")
        right.legend(fontsize="small")
        fig
    '''),
    md(r'''
    Collapse takes time: every dimension starts active, and the ones the model does not need sink towards the
    prior epoch by epoch, their variance falling by decades. **In fast mode nothing has collapsed** (a few hundred
    steps on two thousand digits): both models keep all 50 units and the counts say nothing. The variances of the
    IWAE's posterior means sit above the VAE's (in our run, the smallest 0.026 against 0.018), the direction of
    the effect, but one short run on a small sample is a hint, not a measurement. In full mode (10 epochs of all
    of MNIST) the effect shows: in our run the VAE's count fell from epoch 5 on and ended at 32 of 50 active
    units, the IWAE's at 47 (per epoch: 50, 50, 48, 50, 48, 40, 39, 37, 35, 32 against 50 for seven epochs, then
    49, 48, 47), and on the right the VAE's sorted variances drop by a decade after its 14th dimension where the
    IWAE's hold up to the 18th. The gap grows with training. Burda et al. trained for 3,280 passes, after which
    their VAE used only part of its 50 latent units and the IWAE more, the more the larger its $k$ (their
    Table 1).

    ## Exercises

    ### Exercise 1 (graded): the bound from the log-weights, and its gradient

    Given log-weights $\log w_{nj}$, (N, K) in float64, write `iwae_from_log_weights(log_w)` returning the
    per-example loss $-\hat{\mathcal{L}}_K = -\log \frac1K \sum_j w_{nj}$, shape (N,), and its gradient with
    respect to `log_w`, shape (N, K). Log-weights of MNIST images are several hundred nats below zero:
    `np.exp` of them is 0 in float64, so compute the log-mean-exp stably (subtract each row's maximum first).
    The library's `iwae.log_mean_exp`, `iwae.normalized_weights`, `iwae.iwae_bound`, the models and the
    finite-difference helpers are switched off while the test runs your function.
    '''),
    solution("nb08-iwae-bound", '''
        def iwae_from_log_weights(log_w):
            """log_w: (N, K) -> (loss (N,) = -log mean_j exp(log_w), gradient (N, K) w.r.t. log_w)."""
            ### BEGIN SOLUTION
            m = log_w.max(axis=1, keepdims=True)
            w = np.exp(log_w - m)                       # the largest weight of each row is 1: no underflow
            s = w.sum(axis=1, keepdims=True)
            loss = -(m[:, 0] + np.log(s[:, 0] / log_w.shape[1]))
            return loss, -w / s                         # d(-log sum_j w_j)/dlog w_j = -w~_j
            ### END SOLUTION
    '''),
    tests("nb08-iwae-bound-tests", 3, '''
        yours = exercises.graded(iwae_from_log_weights, "iwae.log_mean_exp", "iwae.normalized_weights",
                                 "iwae.iwae_bound", *exercises.MODELS, *exercises.FINITE_DIFFERENCES)
        rng = np.random.default_rng(0)
        log_w = rng.standard_normal((4, 6)) * 3
        loss, grad = yours(log_w)
        assert loss.shape == (4,) and grad.shape == (4, 6)
        assert np.allclose(loss, -np.log(np.mean(np.exp(log_w), axis=1)), rtol=0, atol=1e-12), "the value"
        num = vn.gradcheck.numerical_gradient(lambda v: yours(v)[0].sum(), log_w.copy())
        err = vn.gradcheck.array_rel_error(grad, num)
        print(f"relative error of the gradient {err:.1e}")
        assert err < 1e-7
        far = log_w - 700.0                                        # exp underflows to 0 here
        loss_far, grad_far = yours(far)
        assert np.all(np.isfinite(loss_far)), "subtract each row's maximum before exp"
        assert np.allclose(loss_far, loss + 700.0, rtol=0, atol=1e-9) and np.allclose(grad_far, grad, atol=1e-12)
        ### BEGIN HIDDEN TESTS
        one, g1 = yours(log_w[:, :1])                              # K = 1: minus the log-weight, gradient -1
        assert np.allclose(one, -log_w[:, 0], atol=1e-12) and np.allclose(g1, -1.0)
        ref, w = vn.iwae.iwae_bound(-log_w, np.zeros_like(log_w))
        assert np.allclose(loss, ref, atol=1e-12) and np.allclose(-grad, w, atol=1e-12)
        assert np.allclose(grad.sum(axis=1), -1.0)
        ### END HIDDEN TESTS
    '''),
    md(r'''
    ### Exercise 2 (graded by hand): a looser ELBO, a better likelihood

    The model trained on $\mathcal{L}_5$ has a lower ELBO than the one trained on the ELBO, yet a higher
    $\mathcal{L}_{5000}$. How can training on a tighter bound make the loosest bound, $\mathcal{L}_1$, worse? And
    why do the normalized weights $\tilde w_j$ in the gradient let dimensions stay active that the VAE lets
    collapse?
    '''),
    answer("nb08-looser-elbo", 2, r'''
    $\log p(x) - \mathcal{L}_1 = \mathrm{KL}(q(h \mid x) \,\|\, p(h \mid x))$: the ELBO is good only when $q$ fits
    the true posterior, so a VAE trades likelihood for a posterior that a diagonal Gaussian can fit. $\mathcal{L}_k$
    with $k > 1$ needs only that *some* of the $k$ samples land where the posterior has mass: a $q$ broader than the
    posterior (which costs ELBO) is cheap, and the decoder is free to make $p(h \mid x)$ any shape that gives a
    higher $p(x)$. So the IWAE model gains $\log p(x)$ and loses ELBO. For active units: in a VAE, a dimension that
    the decoder uses makes every sample's reconstruction depend on it, and each sample that lands badly is paid in
    full, so under the KL's pressure the cheaper solution is to switch the dimension off (collapse). In the IWAE the
    badly placed samples get small $\tilde w_j$ and almost no gradient; a dimension that helps the well placed ones
    pays less for being used, and stays active.
    '''),
    md(r'''
    ### Exercise 3 (not graded)

    Train a third model with `objective="iwae", k=50` (ten times the cost per step) and add it to both figures.
    Then train all of them for 30 epochs in full mode and follow the active units: when does the VAE's count fall
    clearly below the IWAE's? Finally, train a VAE with `objective="elbo", k=5` (the ELBO averaged over 5 samples,
    the paper's "VAE, k = 5"): does it keep more units than the plain VAE, or is it the weighting that matters?
    '''),
]
