"""01 · Latent-variable models and the ELBO."""

from .cells import answer, code, imports, md, solution, tests

CELLS = [
    md(r'''
    # 01 · Latent-variable models and the ELBO

    A latent-variable model explains each observation $x$ by an unobserved cause $h$:

    $$p(x) = \int p(x \mid h)\, p(h)\, dh, \qquad p(h \mid x) = \frac{p(x \mid h)\, p(h)}{p(x)} .$$

    Learning needs the evidence $\log p(x)$, inference needs the posterior $p(h \mid x)$, and for a decoder
    $p(x \mid h)$ that is a neural network neither integral has a closed form. Variational inference picks a
    tractable $q(h \mid x)$ and rests on one identity, true for **every** $q$:

    $$\log p(x) = \underbrace{\mathbb{E}_{q}\big[\log p(x \mid h)\big]
        - \mathrm{KL}\big(q(h \mid x)\,\|\,p(h)\big)}_{\mathrm{ELBO}(q)}
        + \mathrm{KL}\big(q(h \mid x)\,\|\,p(h \mid x)\big).$$

    (Proof: $\log p(x) = \mathbb{E}_q\big[\log \tfrac{p(x, h)}{q(h \mid x)}\big]
    + \mathbb{E}_q\big[\log \tfrac{q(h \mid x)}{p(h \mid x)}\big]$, because $p(x, h) = p(h \mid x)\, p(x)$; then
    split $p(x, h) = p(x \mid h)\, p(h)$ in the first term.) A KL divergence is never negative, so the ELBO is a
    lower bound on $\log p(x)$, and the gap is exactly how far $q$ is from the true posterior. A VAE maximizes
    the ELBO over the decoder and over $q$ at once.

    This notebook uses a model in which every term is exact, so the identity can be checked to the last digit:
    probabilistic PCA, a VAE with a **linear** decoder,

    $$h \sim \mathcal{N}(0, I_Z), \qquad x \mid h \sim \mathcal{N}(W h + b,\ s^2 I_D).$$

    Then $p(x) = \mathcal{N}(b,\ W W^\top + s^2 I)$ and $p(h \mid x) = \mathcal{N}(m, P^{-1})$ with
    $P = I + W^\top W / s^2$ and $m = P^{-1} W^\top (x - b) / s^2$. For $q$ we take the VAE's family, a
    diagonal Gaussian $q(h \mid x) = \mathcal{N}(\mu, \operatorname{diag} \sigma^2)$ given by $\mu$ and
    $\log \sigma^2$.

    **What you will see**

    1. ELBO + KL(q ‖ posterior) = log p(x) to 1e-10, for any q;
    2. the ELBO estimated by sampling, as a VAE computes it;
    3. the gap shrinking as q improves by gradient ascent on the ELBO, down to a floor set by the diagonal family;
    4. the importance-weighted bound (IWAE) closing the rest.

    The model lives in `vae_numpy.tutorial.LinearGaussian`; this notebook only calls it.
    '''),
    imports("exercises", pyplot=False),
    md(r'''
    ## The model

    The ELBO of this model in closed form: the expected log-likelihood of a Gaussian with a linear mean is a
    quadratic, and the KL to the prior is the same closed form a VAE uses (`vn.losses.gaussian_kl`):

    $$\mathrm{ELBO} = -\tfrac{D}{2}\log(2\pi s^2)
      - \frac{\lVert x - b - W\mu \rVert^2 + \sum_j \sigma_j^2 \lVert W_{:,j} \rVert^2}{2 s^2}
      - \mathrm{KL}\big(\mathcal{N}(\mu, \sigma^2)\,\|\,\mathcal{N}(0, I)\big).$$
    '''),
    code('''
        print(inspect.getsource(tutorial.LinearGaussian.elbo))
    '''),
    code('''
        model = tutorial.LinearGaussian.random(data_dim=5, latent_dim=2, noise_std=0.5, seed=0)
        x, h_true = model.sample(3, seed=1)      # three observations x: (3, 5), and the causes that made them
        log_px = model.log_px(x)                 # the exact evidence, (3,)
        m, post_cov = model.posterior(x)         # the exact posterior: mean (3, 2), covariance (2, 2)
        print("log p(x)            =", np.round(log_px, 4))
        print("posterior means     =", np.round(m, 3).tolist())
        print("posterior covariance:\\n", np.round(post_cov, 4))
    '''),
    md(r'''
    ## 1. The identity, for any q

    Draw a few arbitrary $q$ (random $\mu$ and $\log\sigma^2$) and add the two terms.
    '''),
    code('''
        rng = np.random.default_rng(0)
        print(f"{'q':>3} {'ELBO':>10} {'KL(q || p(h|x))':>16} {'sum':>10} {'log p(x)':>10}")
        for trial in range(4):
            mu, log_var = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
            elbo = model.elbo(x, mu, log_var)
            gap = model.kl_to_posterior(x, mu, log_var)
            assert np.allclose(elbo + gap, log_px, rtol=0, atol=1e-10)
            assert np.all(gap >= 0) and np.all(elbo <= log_px)
            print(f"{trial:>3} {elbo[0]:10.4f} {gap[0]:16.4f} {elbo[0] + gap[0]:10.4f} {log_px[0]:10.4f}")
        print("ELBO + KL(q || p(h|x)) = log p(x) for every q, to 1e-10")
    '''),
    md(r'''
    ## 2. The ELBO by sampling, as a VAE computes it

    A VAE has no closed form for $\mathbb{E}_q[\log p(x \mid h)]$. It draws $h = \mu + \sigma \odot \epsilon$
    with $\epsilon \sim \mathcal{N}(0, I)$ (the reparameterization, `vn.sampling`) and keeps the KL to the prior
    in closed form:

    $$\widehat{\mathrm{ELBO}} = \frac{1}{K} \sum_{k=1}^{K} \log p(x \mid \mu + \sigma \odot \epsilon_k)
      - \mathrm{KL}\big(q\,\|\,\mathcal{N}(0, I)\big).$$

    The estimate is unbiased and its standard deviation falls as $1/\sqrt{K}$: the column `std * sqrt(K)` stays
    put. A VAE trains with $K = 1$ per example and step; the noise averages out over the steps.
    '''),
    code('''
        print(inspect.getsource(tutorial.LinearGaussian.elbo_mc))
    '''),
    code('''
        mu, log_var = np.zeros((3, 2)), np.zeros((3, 2))       # q = the prior N(0, I): a poor guess
        exact = model.elbo(x, mu, log_var)
        print(f"exact ELBO of the first example: {exact[0]:.4f}")
        print(f"{'K':>6} {'mean of 20 estimates':>21} {'std':>8} {'std * sqrt(K)':>14}")
        for K in (1, 10, 100, 1000):
            estimates = np.array([model.elbo_mc(x, mu, log_var, n_samples=K, seed=s)[0] for s in range(20)])
            print(f"{K:>6} {estimates.mean():21.4f} {estimates.std():8.4f} {estimates.std() * np.sqrt(K):14.2f}")
        big = model.elbo_mc(x, mu, log_var, n_samples=20_000, seed=0)
        assert np.abs(big - exact).max() < 1.0
    '''),
    md(r'''
    ## 3. A better q, a smaller gap

    Maximizing the ELBO over $q$ is the same as minimizing KL(q ‖ p(h | x)), since their sum is fixed. The
    gradient of the ELBO with respect to q's parameters, for this model:

    $$\frac{\partial\,\mathrm{ELBO}}{\partial \mu} = \frac{W^\top (x - b - W \mu)}{s^2} - \mu, \qquad
      \frac{\partial\,\mathrm{ELBO}}{\partial \log\sigma_j^2}
        = -\frac{\sigma_j^2 \lVert W_{:,j}\rVert^2}{2 s^2} - \frac{\sigma_j^2 - 1}{2}.$$

    The last term is the KL's derivative $\partial\mathrm{KL}/\partial\log\sigma^2 = (\sigma^2 - 1)/2$, taken from
    `vn.losses.gaussian_kl_backward`. As every derivative in this course, it is first checked against finite
    differences (`vn.gradcheck`, float64, relative error below 1e-7):
    '''),
    code('''
        mu, log_var = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
        dmu, dlog_var = model.elbo_grad(x, mu, log_var)
        num_mu = vn.gradcheck.numerical_gradient(lambda mu_: model.elbo(x, mu_, log_var).sum(), mu)
        num_lv = vn.gradcheck.numerical_gradient(lambda lv_: model.elbo(x, mu, lv_).sum(), log_var)
        err_mu = vn.gradcheck.array_rel_error(dmu, num_mu)
        err_lv = vn.gradcheck.array_rel_error(dlog_var, num_lv)
        print(f"relative error of dELBO/dmu: {err_mu:.1e}, of dELBO/dlog_var: {err_lv:.1e}")
        assert err_mu < 1e-7 and err_lv < 1e-7
    '''),
    md(r'''
    Now climb the ELBO from $q = \mathcal{N}(0, I)$ by plain gradient ascent. The step $1/L$, with $L$ the
    largest eigenvalue of $P$ (the curvature of the ELBO in $\mu$), makes every step an improvement.
    '''),
    code('''
        steps = 500
        lr = 1 / np.linalg.eigvalsh(model.precision).max()
        mu, log_var = np.zeros((3, 2)), np.zeros((3, 2))
        trace = []
        for _ in range(steps + 1):
            trace.append((model.elbo(x, mu, log_var), model.kl_to_posterior(x, mu, log_var)))
            dmu, dlog_var = model.elbo_grad(x, mu, log_var)
            mu, log_var = mu + lr * dmu, log_var + lr * dlog_var
        mu_best, lv_best = mu, log_var
        elbos, gaps = (np.array(t) for t in zip(*trace))      # (steps + 1, 3) each
        assert np.all(np.diff(gaps, axis=0) <= 1e-12), "the gap shrinks at every step"
        print("gap at the start:    ", np.round(gaps[0], 4))
        print(f"gap after {steps} steps:", np.round(gaps[-1], 4))
    '''),
    code('''
        fig, (ax1, ax2) = vn.plots.subplots(1, 2, figsize=(10, 3.5))
        ax1.plot(elbos[:, 0], label="ELBO(q)")
        ax1.axhline(log_px[0], color="k", ls="--", label="log p(x), exact")
        ax1.set(xlabel="gradient step", ylabel="nats", title="The ELBO rises towards log p(x) (example 1)")
        ax1.legend()
        ax2.semilogy(gaps)
        ax2.set(xlabel="gradient step", ylabel="KL(q || p(h | x))", title="The gap, for each example")
        fig
    '''),
    md(r'''
    The gap stops at a floor above zero. The posterior covariance printed above has off-diagonal entries: given
    $x$, $h_1$ and $h_2$ are correlated, and no diagonal $q$ can represent that. This is the *approximation
    gap* of a factorized (mean-field) family; a VAE's encoder has it too. The contours show it, each density at
    the same two levels relative to its own peak (the ellipses that hold 39% and 86% of its mass): the posterior
    is a tilted ellipse, the best diagonal $q$ an axis-aligned one. $q$'s ellipse passes through the points where
    the posterior's crosses the two axis lines through the centre ($\sigma_j^2 = 1/P_{jj}$, the posterior's
    *conditional* variance), so it is narrower than the posterior's extent along each axis (whose variance is
    the *marginal* $(P^{-1})_{jj}$). The cell checks it with the numbers.
    '''),
    code('''
        c = m[0]                                            # the posterior mean of the first example
        g1, g2 = np.meshgrid(np.linspace(c[0] - 1.2, c[0] + 1.2, 121), np.linspace(c[1] - 1.2, c[1] + 1.2, 121))
        grid = np.stack([g1.ravel(), g2.ravel()], axis=1)[None]          # (1, K, 2): K points of the plane
        post = np.exp(model.log_posterior(x[:1], grid)).reshape(g1.shape)
        q = np.exp(tutorial.log_q(grid, mu_best[:1], lv_best[:1])).reshape(g1.shape)
        fractions = np.exp(-0.5 * np.array([2.0, 1.0]) ** 2)      # the 2-sigma and 1-sigma ellipses of each
        fig, ax = vn.plots.subplots(figsize=(4.5, 4.5))
        ax.contour(g1, g2, post, levels=post.max() * fractions, colors="k")
        ax.contour(g1, g2, q, levels=q.max() * fractions, colors="tab:red", linestyles="--")
        ax.set(xlabel="$h_1$", ylabel="$h_2$", aspect="equal", title="p(h | x) (black), best diagonal q (red)")
        sd_q, sd_post = np.exp(0.5 * lv_best[0]), np.sqrt(np.diag(post_cov))
        print("standard deviations along h_1, h_2: q", np.round(sd_q, 3), " posterior", np.round(sd_post, 3))
        assert np.all(sd_q < sd_post), "the best diagonal q is narrower than the posterior along each axis"
        assert np.allclose(sd_q, 1 / np.sqrt(np.diag(model.precision)), rtol=1e-3)
        fig
    '''),
    md(r'''
    When $W$ has orthogonal columns, $W^\top W$ and hence the posterior covariance are diagonal, and the same
    ascent closes the gap completely.
    '''),
    code('''
        ortho = tutorial.LinearGaussian.random(data_dim=5, latent_dim=2, noise_std=0.5, orthogonal=True, seed=0)
        print("posterior covariance:\\n", np.round(ortho.posterior(x)[1], 6))
        lr_o = 1 / np.linalg.eigvalsh(ortho.precision).max()
        mu, log_var = np.zeros((3, 2)), np.zeros((3, 2))
        for _ in range(steps):
            dmu, dlog_var = ortho.elbo_grad(x, mu, log_var)
            mu, log_var = mu + lr_o * dmu, log_var + lr_o * dlog_var
        print(f"gap after {steps} steps:", ortho.kl_to_posterior(x, mu, log_var))
        assert ortho.kl_to_posterior(x, mu, log_var).max() < 1e-6
    '''),
    md(r'''
    ## 4. Importance sampling closes the rest: the IWAE bound

    Averaging $K$ importance weights inside the logarithm gives a tighter bound (Burda et al., 2016):

    $$\log p(x) \;\ge\; \mathbb{E}\Big[\log \frac{1}{K} \sum_{k=1}^{K} \frac{p(x, h_k)}{q(h_k \mid x)}\Big],
      \qquad h_k \sim q(h \mid x).$$

    $K = 1$ is the ELBO; the bound rises to $\log p(x)$ as $K$ grows. For a trained VAE, where $\log p(x)$ is out
    of reach, `model.log_likelihood(x, n_samples=K)` computes this estimate (notebook 03).
    '''),
    code('''
        R = tutorial.pick(fast=50, full=200)     # repetitions: the bound holds in expectation, not every time
        x1 = np.repeat(x[:1], R, axis=0)                       # the first example, R times
        prior_q = (np.zeros((R, 2)), np.zeros((R, 2)))
        best_q = (np.repeat(mu_best[:1], R, axis=0), np.repeat(lv_best[:1], R, axis=0))
        print(f"log p(x) = {log_px[0]:.4f} (exact); mean of {R} estimates:")
        print(f"{'K':>6} {'q = prior':>11} {'q = best diagonal':>18}")
        bounds = []
        for K in (1, 10, 100, 1000, 10_000):
            poor = model.log_px_importance(x1, *prior_q, n_samples=K, seed=K).mean()
            good = model.log_px_importance(x1, *best_q, n_samples=K, seed=K).mean()
            bounds.append(good)
            print(f"{K:>6} {poor:11.4f} {good:18.4f}")
        assert np.all(np.diff(bounds) > 0) and abs(bounds[-1] - log_px[0]) < 0.03
    '''),
    md(r'''
    Look at the prior column: its ELBO is 16 nats worse, yet by $K = 100$ it is as good an importance sampler as
    the best diagonal $q$. The prior is wide and covers the whole posterior; the best diagonal $q$ is narrower
    than the posterior along the correlated direction (see the contours), so some weights $p(x, h)/q(h \mid x)$
    are large and rare. Minimizing KL(q ‖ p) makes $q$ *mode-seeking*: it punishes $q$ for putting mass where
    the posterior has little, not for missing some of the posterior's mass.
    '''),
    md(r'''
    ## Exercises

    ### Exercise 1 (graded): the best diagonal q in closed form

    Gradient ascent found the best diagonal Gaussian numerically. Find it on paper: set both derivatives of the
    ELBO above to zero and solve for $\mu$ and $\log\sigma^2$. Then write `optimal_q(model, x)`, returning
    `(mu, log_var)`, each of shape `(N, Z)`. You may use `model.W` (D, Z), `model.b` (D,), `model.noise_std`
    and `model.posterior(x)`.

    The test checks your answer by finite differences: at the optimum the gradient of the ELBO vanishes.
    '''),
    solution("nb01-optimal-q", '''
        def optimal_q(model, x):
            """The diagonal Gaussian q(h | x) = N(mu, diag exp(log_var)) of largest ELBO. x: (N, D) -> (N, Z) each."""
            ### BEGIN SOLUTION
            # dELBO/dmu = 0:       (I + W^T W / s^2) mu = W^T (x - b) / s^2, so mu is the posterior mean m
            # dELBO/dlog_var = 0:  sigma_j^2 (1 + |W_j|^2 / s^2) = 1, so sigma_j^2 = 1 / P_jj
            mu, _ = model.posterior(x)
            precision_diag = 1 + np.sum(model.W ** 2, axis=0) / model.noise_std ** 2
            log_var = np.tile(-np.log(precision_diag), (len(mu), 1))
            return mu, log_var
            ### END SOLUTION
    '''),
    tests("nb01-optimal-q-tests", 3, '''
        lg = tutorial.LinearGaussian.random(data_dim=5, latent_dim=2, noise_std=0.5, seed=0)   # the model above
        x_lg, _ = lg.sample(3, seed=1)
        mu_opt, lv_opt = (np.array(a, dtype=np.float64) for a in optimal_q(lg, x_lg))
        assert mu_opt.shape == lv_opt.shape == (3, 2), "mu and log_var must both have shape (N, Z)"
        # the gradient of the ELBO vanishes at the optimum, by finite differences
        g_mu = vn.gradcheck.numerical_gradient(lambda mu_: lg.elbo(x_lg, mu_, lv_opt).sum(), mu_opt.copy())
        g_lv = vn.gradcheck.numerical_gradient(lambda lv_: lg.elbo(x_lg, mu_opt, lv_).sum(), lv_opt.copy())
        print(f"largest |dELBO| at your q: {max(np.abs(g_mu).max(), np.abs(g_lv).max()):.1e}")
        assert np.abs(g_mu).max() < 1e-6 and np.abs(g_lv).max() < 1e-6
        # and it beats the q that copies the posterior's marginal variances
        m_lg, cov_lg = lg.posterior(x_lg)
        marginal = np.tile(np.log(np.diag(cov_lg)), (3, 1))
        assert np.all(lg.elbo(x_lg, mu_opt, lv_opt) > lg.elbo(x_lg, m_lg, marginal))
        ### BEGIN HIDDEN TESTS
        other = tutorial.LinearGaussian.random(data_dim=7, latent_dim=3, noise_std=0.8, seed=5)
        x_other, _ = other.sample(4, seed=6)
        mu_o, lv_o = (np.array(a, dtype=np.float64) for a in optimal_q(other, x_other))
        assert mu_o.shape == lv_o.shape == (4, 3)
        d_mu, d_lv = other.elbo_grad(x_other, mu_o, lv_o)
        assert np.abs(d_mu).max() < 1e-8 and np.abs(d_lv).max() < 1e-8
        # with a diagonal posterior the best diagonal q is the posterior itself
        lg_o = tutorial.LinearGaussian.random(data_dim=5, latent_dim=2, noise_std=0.5, orthogonal=True, seed=0)
        mu_p, lv_p = (np.array(a, dtype=np.float64) for a in optimal_q(lg_o, x_lg))
        assert lg_o.kl_to_posterior(x_lg, mu_p, lv_p).max() < 1e-10
        ### END HIDDEN TESTS
    '''),
    md(r'''
    ### Exercise 2 (graded): the reparameterized gradient of the ELBO

    Section 2 estimated the ELBO by sampling; a VAE also needs its **gradient** from the same samples. Write
    `elbo_estimate_and_grad(model, x, mu, log_var, eps)` for the linear-Gaussian model: with $K$ draws
    `eps` of shape (N, K, Z) and $h_k = \mu + \sigma \odot \epsilon_k$, return the estimate (N,)

    $$\widehat{\mathrm{ELBO}} = \frac{1}{K}\sum_k \log p(x \mid h_k) - \mathrm{KL}\big(q \,\|\, \mathcal N(0, I)\big),
      \qquad \log p(x \mid h) = -\tfrac{D}{2}\log(2\pi s^2) - \frac{\lVert x - b - W h\rVert^2}{2 s^2},$$

    and its exact derivatives with `eps` held fixed, `dmu` and `dlog_var` (N, Z) each: the chain rule through
    $h_k$ (notebook 03 derives $\partial h / \partial \log\sigma^2 = \epsilon \odot \sigma / 2$) plus the KL's
    closed-form derivatives. Use NumPy and `model.W`, `model.b`, `model.noise_std`; the library's own gradients
    (`elbo_grad`, `vn.losses.gaussian_kl_backward`, `vn.sampling.reparameterize_backward`) and the
    finite-difference helpers are switched off while the test runs your function.

    The test checks your derivatives by finite differences of your estimate (float64), and shows that averaged
    over many draws they agree with the exact gradient of the ELBO: the reparameterized gradient is unbiased.
    '''),
    solution("nb01-elbo-grad", '''
        def elbo_estimate_and_grad(model, x, mu, log_var, eps):
            """x: (N, D), mu, log_var: (N, Z), eps: (N, K, Z) -> (elbo (N,), dmu (N, Z), dlog_var (N, Z))."""
            ### BEGIN SOLUTION
            W, b, s2 = model.W, model.b, model.noise_std ** 2
            D, K = W.shape[0], eps.shape[1]
            sigma = np.exp(0.5 * log_var)
            h = mu[:, None, :] + sigma[:, None, :] * eps                    # (N, K, Z)
            r = x[:, None, :] - b - h @ W.T                                 # (N, K, D) residuals
            log_lik = -0.5 * D * np.log(2 * np.pi * s2) - 0.5 * np.sum(r * r, axis=2) / s2   # (N, K)
            kl = -0.5 * np.sum(1 + log_var - mu ** 2 - sigma ** 2, axis=1)
            dh = r @ W / s2 / K                                             # d(mean_k log p)/dh_k: (N, K, Z)
            dmu = dh.sum(axis=1) - mu                                       # dh/dmu = 1; dKL/dmu = mu
            dlog_var = np.sum(dh * eps, axis=1) * sigma / 2 - (sigma ** 2 - 1) / 2
            return log_lik.mean(axis=1) - kl, dmu, dlog_var
            ### END SOLUTION
    '''),
    tests("nb01-elbo-grad-tests", 4, '''
        banned = ("tutorial.LinearGaussian.elbo_grad", "losses.gaussian_kl_backward",
                  "sampling.reparameterize_backward", *exercises.FINITE_DIFFERENCES)
        yours = exercises.graded(elbo_estimate_and_grad, *banned)
        lg = tutorial.LinearGaussian.random(data_dim=5, latent_dim=2, noise_std=0.5, seed=0)
        x_lg, _ = lg.sample(3, seed=1)
        rng = np.random.default_rng(7)
        mu, log_var, eps = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), rng.normal(size=(3, 4, 2))
        value, dmu, dlog_var = yours(lg, x_lg, mu, log_var, eps)
        h = mu[:, None, :] + np.exp(0.5 * log_var)[:, None, :] * eps
        expected = lg.log_px_given_h(x_lg, h).mean(axis=1) - vn.losses.gaussian_kl(mu, log_var)
        assert np.shape(value) == (3,) and np.allclose(value, expected, rtol=1e-10, atol=0), "the estimate"
        f = lambda mu_, lv_: yours(lg, x_lg, mu_, lv_, eps)[0].sum()                # noqa: E731
        err_mu = vn.gradcheck.array_rel_error(dmu, vn.gradcheck.numerical_gradient(lambda m: f(m, log_var), mu))
        err_lv = vn.gradcheck.array_rel_error(dlog_var, vn.gradcheck.numerical_gradient(lambda v: f(mu, v), log_var))
        print(f"relative error by finite differences: dmu {err_mu:.1e}, dlog_var {err_lv:.1e}")
        assert err_mu < 1e-7 and err_lv < 1e-7
        # unbiased: the mean over K draws is the exact gradient of the ELBO, within 5 standard errors
        K = 200_000
        mean_grad = np.concatenate(yours(lg, x_lg, mu, log_var, rng.normal(size=(3, K, 2)))[1:])
        exact = np.concatenate(lg.elbo_grad(x_lg, mu, log_var))
        one_draw = np.array([np.concatenate(yours(lg, x_lg, mu, log_var, rng.normal(size=(3, 1, 2)))[1:])
                             for _ in range(500)])
        stderr = one_draw.std(axis=0) / np.sqrt(K)
        off = np.abs(mean_grad - exact)
        print(f"mean of {K:,} draws: largest |difference| from the exact gradient {off.max():.3f}, "
              f"{np.max(off / stderr):.1f} standard errors at most")
        assert np.all(off < 5 * stderr)
        ### BEGIN HIDDEN TESTS
        other = tutorial.LinearGaussian.random(data_dim=7, latent_dim=3, noise_std=0.8, seed=5)
        x_o, _ = other.sample(2, seed=6)
        mu, log_var, eps = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 1, 3))
        _, dmu, dlog_var = yours(other, x_o, mu, log_var, eps)
        g = lambda mu_, lv_: yours(other, x_o, mu_, lv_, eps)[0].sum()              # noqa: E731
        num_mu = vn.gradcheck.numerical_gradient(lambda m: g(m, log_var), mu)
        num_lv = vn.gradcheck.numerical_gradient(lambda v: g(mu, v), log_var)
        assert vn.gradcheck.array_rel_error(dmu, num_mu) < 1e-7
        assert vn.gradcheck.array_rel_error(dlog_var, num_lv) < 1e-7
        ### END HIDDEN TESTS
    '''),
    md(r'''
    ### Exercise 3 (graded by hand): the floor of the gap

    At the best diagonal $q$ of the first model, the gap was about 0.28 nats for every example. Explain in a few
    sentences why it is not zero, why it does not depend on $x$, and name two ways to close it.
    '''),
    answer("nb01-gap-floor", 2, r'''
    The posterior $\mathcal{N}(m, P^{-1})$ has a full covariance ($W^\top W$ is not diagonal, so $h_1$ and $h_2$
    are correlated given $x$), and a diagonal Gaussian cannot match it. At the optimum $\mu = m$ and
    $\sigma_j^2 = 1/P_{jj}$, and the remaining KL is
    $\tfrac12\big(\sum_j \log P_{jj} - \log\det P\big) \ge 0$ (Hadamard's inequality), zero only for a diagonal
    $P$. $P$ does not depend on $x$ in a linear-Gaussian model (only the posterior mean does), so neither does
    the floor. To close it: a richer $q$ (a full covariance through a Cholesky factor, or a normalizing flow);
    importance weighting with many samples (IWAE, section 4); or, for this model, rotating the latent space so
    that $W$ has orthogonal columns, which leaves $p(x)$ unchanged because the prior is rotation-invariant.
    '''),
    md(r'''
    ### Exercise 4 (not graded)

    Rerun the notebook with `noise_std=0.1` and with `noise_std=2.0`. How do the posterior correlation, the
    floor of the gap and the number of samples the IWAE bound needs change? Explain with $P = I + W^\top W/s^2$.
    '''),
]
