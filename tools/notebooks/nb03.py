"""03 · The VAE: the reparameterization trick, the closed-form KL, the ELBO, training on MNIST."""

from .cells import answer, code, imports, md, solution, tests

CELLS = [
    md(r'''
    # 03 · The variational autoencoder

    The VAE (Kingma & Welling, 2014) is the autoencoder of notebook 02 with a distribution for a code. The
    encoder outputs the parameters of $q(h \mid x) = \mathcal{N}\big(\mu(x), \operatorname{diag}\sigma^2(x)\big)$,
    as $\mu$ and $\log\sigma^2$; the decoder defines $p(x \mid h)$; the prior is $p(h) = \mathcal{N}(0, I)$. The
    loss is the negative ELBO of notebook 01, per example, averaged over the batch:

    $$L = \frac{1}{N} \sum_n \Big[ -\log p(x_n \mid h_n)
      + \beta\, \mathrm{KL}\big(q(h \mid x_n)\,\|\,\mathcal{N}(0, I)\big) \Big],$$

    $$h_n = \mu_n + \sigma_n \odot \epsilon_n, \qquad \epsilon_n \sim \mathcal{N}(0, I),$$

    with $\beta = 1$ for the ELBO itself. Two new pieces need a backward pass:

    **The reparameterization** $h = \mu + \sigma \odot \epsilon$, $\sigma = \exp(\tfrac12 \log\sigma^2)$. Sampling
    is not differentiable, but with the noise $\epsilon$ drawn outside, $h$ is a smooth function of $\mu$ and
    $\log\sigma^2$:

    $$\frac{\partial L}{\partial \mu} = \frac{\partial L}{\partial h}, \qquad
      \frac{\partial L}{\partial \log\sigma^2} = \frac{\partial L}{\partial h} \odot \epsilon \odot \frac{\sigma}{2}.$$

    **The KL to the prior**, in closed form for two Gaussians, with its derivatives:

    $$\mathrm{KL} = -\frac{1}{2} \sum_j \big(1 + \log\sigma_j^2 - \mu_j^2 - \sigma_j^2\big), \qquad
      \frac{\partial\,\mathrm{KL}}{\partial \mu} = \mu, \qquad
      \frac{\partial\,\mathrm{KL}}{\partial \log\sigma^2} = \frac{\sigma^2 - 1}{2}.$$

    $\mu$ and $\log\sigma^2$ feed both $h$ and the KL, so their gradients are the sums of the two paths.

    You will write the reparameterization's backward pass, the KL with its gradient, and then the whole VAE's
    forward and backward pass from the pieces (each graded by finite differences), check the package's VAE the
    same way, and train it on MNIST.
    '''),
    imports("exercises", pyplot=False),
    md(r'''
    ## The reparameterization trick

    The package's sampler (`vn.sampling`); the one place where $\sigma$ is computed from $\log\sigma^2$ is
    `std_from_log_var`, shared with the KL:
    '''),
    code('''
        print(inspect.getsource(vn.sampling.std_from_log_var))
        print(inspect.getsource(vn.sampling.reparameterize_forward))
    '''),
    md(r'''
    Why not differentiate through the sampling some other way? The alternative, the score-function (REINFORCE)
    estimator $\nabla_\mu \mathbb{E}_q[f(h)] = \mathbb{E}_q[f(h)\, \nabla_\mu \log q(h)]$, needs no derivative of
    $f$ but is far noisier. For $q = \mathcal{N}(\mu, \sigma^2)$ and $f(h) = (h - c)^2$, whose exact gradient is
    $2(\mu - c)$:
    '''),
    code('''
        mu0, sigma0, c = 0.5, 1.5, 2.0
        exact = 2 * (mu0 - c)                                   # d/dmu [(mu - c)^2 + sigma^2]
        eps = np.random.default_rng(0).standard_normal(10_000)
        h = mu0 + sigma0 * eps                                  # the reparameterization
        pathwise = 2 * (h - c)                                  # f'(h) * dh/dmu, with dh/dmu = 1
        score = (h - c) ** 2 * (h - mu0) / sigma0 ** 2          # f(h) * d log q(h) / dmu
        print(f"exact gradient {exact:.3f}")
        for name, g in (("pathwise (reparameterization)", pathwise), ("score function", score)):
            print(f"{name:<30} mean {g.mean():7.3f}   std of one sample {g.std():6.2f}")
            assert abs(g.mean() - exact) < 4 * g.std() / np.sqrt(len(g))
        assert pathwise.std() < score.std() / 2
    '''),
    md(r'''
    ### Exercise 1 (graded): the reparameterization's backward pass

    Write `reparameterize_backward(dh, cache)`: `dh` is $\partial L / \partial h$ of shape (N, Z) and `cache` is
    what `vn.sampling.reparameterize_forward` returns beside $h$, the pair `(eps, sigma)`. Return
    `(dmu, dlog_var)`, each (N, Z), without modifying `dh`. The library's own backward
    (`vn.sampling.reparameterize_backward`, the fused kernel, the models) and its finite-difference helpers are
    switched off while the test runs your function.
    '''),
    solution("nb03-reparam-backward", '''
        def reparameterize_backward(dh, cache):
            """dh: (N, Z) -> (dmu, dlog_var), each (N, Z), for h = mu + exp(log_var / 2) * eps."""
            eps, sigma = cache
            ### BEGIN SOLUTION
            dmu = dh.copy()                       # dh/dmu = 1
            dlog_var = dh * eps * sigma / 2       # dh/dlog_var = eps * dsigma/dlog_var = eps * sigma / 2
            ### END SOLUTION
            return dmu, dlog_var
    '''),
    tests("nb03-reparam-backward-tests", 3, '''
        yours = exercises.graded(reparameterize_backward, "sampling.reparameterize_backward",
                                 "kernels.reparam_kl_backward", *exercises.MODELS, *exercises.FINITE_DIFFERENCES)
        rng = np.random.default_rng(1)
        mu, log_var, eps = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
        h, cache = vn.sampling.reparameterize_forward(mu, log_var, eps)
        report = vn.gradcheck.check_function(
            forward=lambda mu, log_var: vn.sampling.reparameterize_forward(mu, log_var, eps)[0],
            backward=lambda dh: dict(zip(("mu", "log_var"), yours(dh, cache))),
            inputs={"mu": mu, "log_var": log_var}, title="your reparameterize_backward")
        print(report)
        assert report.max_error < 1e-7
        ### BEGIN HIDDEN TESTS
        for shape in ((1, 5), (6, 2)):
            mu, log_var, eps = (rng.standard_normal(shape) * 2 for _ in range(3))
            h, cache = vn.sampling.reparameterize_forward(mu, log_var, eps)
            dh = rng.standard_normal(shape)
            dh_before = dh.copy()
            mine = yours(dh, cache)
            assert np.array_equal(dh, dh_before), "dh was modified"
            for a, b in zip(mine, vn.sampling.reparameterize_backward(dh, cache), strict=True):
                assert np.shape(a) == shape and vn.gradcheck.array_rel_error(a, b) < 1e-12
        ### END HIDDEN TESTS
    '''),
    md(r'''
    ## The KL divergence to the prior

    For $q = \mathcal{N}(\mu, \sigma^2)$ and $p = \mathcal{N}(0, 1)$ in one dimension,
    $\mathrm{KL} = \mathbb{E}_q[\log q - \log p] = -\log\sigma - \tfrac12 + \tfrac12(\sigma^2 + \mu^2)$, and a
    diagonal Gaussian sums this over the dimensions. A Monte Carlo estimate agrees with the closed form (it is
    what a VAE would have to use for a prior without one):
    '''),
    code('''
        rng = np.random.default_rng(2)
        mu, log_var = rng.standard_normal((1, 3)), rng.standard_normal((1, 3))
        eps = rng.standard_normal((100_000, 3))
        h, _ = vn.sampling.reparameterize_forward(np.repeat(mu, len(eps), 0), np.repeat(log_var, len(eps), 0), eps)
        log_q = tutorial.log_q(h[None], mu, log_var)[0]                 # log q(h | x): (K,)
        log_p = -0.5 * np.sum(h ** 2 + np.log(2 * np.pi), axis=1)       # log N(h | 0, I): (K,)
        mc = np.mean(log_q - log_p)
        closed = vn.losses.gaussian_kl(mu, log_var)[0]
        print(f"closed form {closed:.4f}, Monte Carlo {mc:.4f} +- {np.std(log_q - log_p) / np.sqrt(len(eps)):.4f}")
        assert abs(mc - closed) < 0.02
    '''),
    md(r'''
    ### Exercise 2 (graded): the KL and its gradient

    Write `kl_divergence(mu, log_var)`, returning the KL of each example, shape (N,), and
    `kl_backward(dkl, mu, log_var)`, returning `(dmu, dlog_var)` given the upstream gradient `dkl` of shape (N,)
    (one number per example: $\partial L / \partial \mathrm{KL}_n$). The library's KL, its gradient, the fused
    kernels, the models and the finite-difference helpers are switched off while the test runs your functions.
    '''),
    solution("nb03-kl", '''
        def kl_divergence(mu, log_var):
            """KL(N(mu, diag exp(log_var)) || N(0, I)) per example. mu, log_var: (N, Z) -> (N,)."""
            ### BEGIN SOLUTION
            return -0.5 * np.sum(1 + log_var - mu ** 2 - np.exp(log_var), axis=1)
            ### END SOLUTION


        def kl_backward(dkl, mu, log_var):
            """dkl: (N,) -> (dmu, dlog_var), each (N, Z)."""
            ### BEGIN SOLUTION
            dkl = np.asarray(dkl)[:, None]
            return dkl * mu, dkl * (np.exp(log_var) - 1) / 2
            ### END SOLUTION
    '''),
    tests("nb03-kl-tests", 3, '''
        banned = ("losses.gaussian_kl", "losses.gaussian_kl_backward", "kernels.reparam_kl_forward",
                  "kernels.reparam_kl_backward", "explore.kl_per_dim", *exercises.MODELS, *exercises.FINITE_DIFFERENCES)
        kl_yours, kl_backward_yours = exercises.graded(kl_divergence, *banned), exercises.graded(kl_backward, *banned)
        rng = np.random.default_rng(3)
        mu, log_var = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
        kl = kl_yours(mu, log_var)
        assert np.shape(kl) == (4,), "one KL per example"
        assert vn.gradcheck.array_rel_error(kl, vn.losses.gaussian_kl(mu, log_var)) < 1e-12
        report = vn.gradcheck.check_function(
            forward=kl_yours,
            backward=lambda dkl: dict(zip(("mu", "log_var"), kl_backward_yours(dkl, mu, log_var))),
            inputs={"mu": mu, "log_var": log_var}, title="your KL gradient")
        print(report)
        assert report.max_error < 1e-7
        ### BEGIN HIDDEN TESTS
        zeros = np.zeros((2, 5))
        assert np.allclose(kl_yours(zeros, zeros), 0), "q = the prior has KL 0"
        assert all(np.allclose(g, 0) for g in kl_backward_yours(np.ones(2), zeros, zeros)), "and gradient 0"
        mu, log_var, dkl = rng.standard_normal((6, 2)) * 3, rng.standard_normal((6, 2)) * 2, rng.standard_normal(6)
        reference = vn.losses.gaussian_kl_backward(dkl, mu, log_var)
        for a, b in zip(kl_backward_yours(dkl, mu, log_var), reference, strict=True):
            assert vn.gradcheck.array_rel_error(a, b) < 1e-12
        ### END HIDDEN TESTS
    '''),
    md(r'''
    ## The ELBO of a VAE, and its gradient

    `vn.VAE.forward(x, eps)` returns the mean negative ELBO and keeps its two parts in `model.last`. The same
    number from the pieces: encode, reparameterize, decode, the Bernoulli log-likelihood, the KL.
    '''),
    code('''
        model = vn.VAE(input_dim=20, hidden_dims=(16,), latent_dim=4, dtype="float64", seed=0)
        rng = np.random.default_rng(4)
        x_small, eps = rng.random((6, 20)), rng.standard_normal((6, 4))
        loss = model.forward(x_small, eps=eps)
        print(f"model.forward: {loss:.6f} nats;", {k: round(v, 4) for k, v in model.last.items()})

        mu, log_var = model.encode(x_small)
        h, _ = vn.sampling.reparameterize_forward(mu, log_var, eps)
        p = model.decode(h)                                      # Bernoulli means, (6, 20)
        reconstruction = -np.sum(x_small * np.log(p) + (1 - x_small) * np.log1p(-p), axis=1)
        by_hand = np.mean(reconstruction + model.beta * vn.losses.gaussian_kl(mu, log_var))
        print(f"by hand:       {by_hand:.6f} nats")
        assert abs(loss - by_hand) < 1e-10 * abs(loss)
    '''),
    md(r'''
    In the model, the reparameterization's backward pass and the KL's gradient run fused in one pass over the
    (N, Z) arrays (`vae_numpy._kernels`, a Numba loop beside this NumPy twin). With $\beta / N$ the weight of
    each KL term in the batch mean, the two paths into $\mu$ and $\log\sigma^2$ add:
    '''),
    code('''
        print(inspect.getsource(vn._kernels.reparam_kl_backward_np))
    '''),
    md(r'''
    `vn.gradcheck.check_model` checks `backward()` against finite differences of `forward(x, eps)` with the
    noise held fixed, for every parameter, here for a Bernoulli decoder and a Gaussian decoder that learns its
    variance per pixel: the lecture's $p(x \mid h) = \mathcal{N}(\mu_g(h), \operatorname{diag}\sigma_g^2(h))$,
    with the variance $\sigma_g^2$ on the diagonal of the covariance:
    '''),
    code('''
        for model in (vn.VAE(20, (16,), 4, beta=1.0, dtype="float64", seed=0),
                      vn.VAE(20, (16, 8), 4, likelihood="gaussian", decoder_sigma="learned", dtype="float64", seed=1)):
            print(vn.gradcheck.check_model(model, x_small).assert_ok(), "\\n")
    '''),
    md(r'''
    ### Exercise 3 (graded): the whole VAE, forward and backward, by hand

    The model's `forward` and `backward` do, fused, what you can now write from the pieces. For a VAE with one
    hidden layer on each side, parameters named as in `vn.VAE(...).params`:

    | layer | input | output |
    |---|---|---|
    | `enc1` then relu | x (N, D) | g (N, H) |
    | `enc_mu`, `enc_log_var` (both read g) | g | $\mu$, $\log\sigma^2$ (N, Z) |
    | the reparameterization | $\mu, \log\sigma^2, \epsilon$ | h (N, Z) |
    | `dec1` then relu | h | d (N, H) |
    | `dec_out` | d | logits (N, D) |

    write `vae_forward(params, x, eps)`, returning the mean negative ELBO ($\beta = 1$, Bernoulli likelihood) and
    a cache, and `vae_backward(cache)`, returning a gradient for every key of `params`. Two places need care:
    $\mu$ and $\log\sigma^2$ receive gradients from the sample path and from the KL, and g feeds both heads, so
    its gradient is the sum of theirs. The forward pieces (`vn.layers.dense_forward`,
    `vn.layers.activation_forward` and `activation_backward`, `vn.sampling.reparameterize_forward`,
    `vn.losses.bernoulli_nll` and its backward) are yours to use; every backward of a dense layer, of the
    sampling and of the KL you write yourself (or reuse your functions above): the library's versions, its models
    and its finite-difference helpers are switched off while the test runs your functions.
    '''),
    solution("nb03-vae-backprop", '''
        def vae_forward(params, x, eps):
            """Mean negative ELBO of the one-hidden-layer VAE. x: (N, D), eps: (N, Z) -> (loss, cache)."""
            ### BEGIN SOLUTION
            dense, act = vn.layers.dense_forward, vn.layers.activation_forward
            a1, c1 = dense(x, params["enc1.W"], params["enc1.b"])
            g, r1 = act("relu", a1)
            mu, c_mu = dense(g, params["enc_mu.W"], params["enc_mu.b"])
            log_var, c_lv = dense(g, params["enc_log_var.W"], params["enc_log_var.b"])
            h, c_h = vn.sampling.reparameterize_forward(mu, log_var, eps)
            a2, c2 = dense(h, params["dec1.W"], params["dec1.b"])
            d, r2 = act("relu", a2)
            logits, c3 = dense(d, params["dec_out.W"], params["dec_out.b"])
            kl = -0.5 * np.sum(1 + log_var - mu ** 2 - np.exp(log_var), axis=1)
            loss = float(np.mean(vn.losses.bernoulli_nll(logits, x) + kl))
            return loss, (x, logits, mu, c1, r1, c_mu, c_lv, c_h, c2, r2, c3)
            ### END SOLUTION


        def vae_backward(cache):
            """Gradients of the mean negative ELBO: a dict name -> array, one per parameter."""
            ### BEGIN SOLUTION
            x, logits, mu, c1, r1, c_mu, c_lv, c_h, c2, r2, c3 = cache
            N = len(x)
            grads = {}

            def dense_back(name, dout, cache):
                inp, W = cache
                grads[name + ".W"], grads[name + ".b"] = inp.T @ dout, dout.sum(axis=0)
                return dout @ W.T

            dlogits = vn.losses.bernoulli_nll_backward(np.full(N, 1.0 / N), logits, x)   # each example 1/N
            dd = dense_back("dec_out", dlogits, c3)
            dh = dense_back("dec1", vn.layers.activation_backward("relu", dd, r2), c2)
            eps, sigma = c_h
            dmu = dh + mu / N                                        # sample path + KL path
            dlog_var = dh * eps * sigma / 2 + (sigma ** 2 - 1) / (2 * N)
            dg = dense_back("enc_mu", dmu, c_mu) + dense_back("enc_log_var", dlog_var, c_lv)  # g feeds both
            dense_back("enc1", vn.layers.activation_backward("relu", dg, r1), c1)
            return grads
            ### END SOLUTION
    '''),
    tests("nb03-vae-backprop-tests", 5, '''
        banned = (*exercises.DENSE_BACKWARD, "sampling.reparameterize_backward",
                  "losses.gaussian_kl_backward", "kernels.reparam_kl_backward", *exercises.MODELS,
                  *exercises.FINITE_DIFFERENCES)
        forward, backward = exercises.graded(vae_forward, *banned), exercises.graded(vae_backward, *banned)
        vae_t = vn.VAE(input_dim=12, hidden_dims=(8,), latent_dim=3, dtype="float64", seed=0)
        rng = np.random.default_rng(5)
        x_t, eps_t = rng.random((5, 12)), rng.standard_normal((5, 3))
        loss, cache = forward(vae_t.params, x_t, eps_t)
        print(f"your loss {loss:.6f}, vn.VAE {vae_t.forward(x_t, eps=eps_t):.6f}")
        assert abs(loss - vae_t.forward(x_t, eps=eps_t)) < 1e-10 * abs(loss)
        grads = backward(cache)
        assert set(grads) == set(vae_t.params), f"one gradient per parameter: {sorted(vae_t.params)}"
        for name, p in vae_t.params.items():
            numerical = vn.gradcheck.numerical_gradient(lambda _: vae_forward(vae_t.params, x_t, eps_t)[0], p)
            error = vn.gradcheck.array_rel_error(grads[name], numerical)
            print(f"{name:<14} relative error {error:.1e}")
            assert error < 1e-7, name
        ### BEGIN HIDDEN TESTS
        vae_h = vn.VAE(input_dim=9, hidden_dims=(6,), latent_dim=4, dtype="float64", seed=3)
        x_h, eps_h = rng.random((3, 9)), rng.standard_normal((3, 4))
        _, cache_h = forward(vae_h.params, x_h, eps_h)
        vae_h.forward(x_h, eps=eps_h)
        vae_h.backward()
        grads_h = backward(cache_h)
        for name in vae_h.params:
            assert vn.gradcheck.array_rel_error(grads_h[name], vae_h.grads[name]) < 1e-10, name
        ### END HIDDEN TESTS
    '''),
    md(r'''
    ## Training on MNIST

    `vn.train` runs the loop of notebook 02 with fresh noise $\epsilon$ for every batch, a validation set and a
    history. In fast mode it sees a thousand digits for one epoch; otherwise all of MNIST (or the embedded
    5,000 digits when offline) for 20 epochs, enough for the pictures and numbers below (the test loss still
    creeps down by a nat or two over the next 30).
    '''),
    code('''
        data = tutorial.load_mnist(n_train=tutorial.pick(fast=1000, full=None),
                                   n_test=tutorial.pick(fast=500, full=None))
        print(data)
        vae = vn.VAE(input_dim=784, hidden_dims=(400,), latent_dim=20, seed=0)
        history = vn.train(vae, data.x_train, data.x_test, epochs=tutorial.pick(fast=1, full=20),
                           batch_size=100, progress=False, callbacks=[tutorial.print_epoch])
    '''),
    code('''
        epochs = [r["epoch"] for r in history]
        fig, ax = vn.plots.subplots(figsize=(6, 3.5))
        ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
        ax.plot(epochs, [r["val_loss"] for r in history], "o-", label="test")
        ax.set(xlabel="epoch", ylabel="negative ELBO (nats)", title="Training curve")
        ax.legend()
        first = history[0]
        print(f"epoch 1: train {first['train_loss']:.2f}, test {first['val_loss']:.2f}")
        assert first["train_loss"] > first["val_loss"]          # explained below
        fig
    '''),
    md(r'''
    Why is the first epoch's **training** loss above its **test** loss, when the model has never seen the test
    digits? The two are not measured at the same time. The training loss of an epoch is the mean over its
    batches, each scored by the weights *as they were at that batch*: the first batches of epoch 1 were scored by
    an untrained model (about 540 nats). The test loss is measured once, at the epoch's end, by the final
    weights. Over the next epochs the model changes less within an epoch and the two curves meet; a training
    loss *below* the test loss that keeps widening would be overfitting. The training loss also uses a fresh
    $\epsilon$ per batch while the test loss uses its own draws; both are noisy estimates of the same bound.
    '''),
    md(r'''
    ## How good is it?

    The negative ELBO on held-out digits bounds $-\log p(x)$ from above; the importance-weighted estimate of
    notebook 01 (`model.log_likelihood`, through `vn.evaluation`) tightens it. The KL term is the number of nats
    the code carries about each image; *active units* count the latent dimensions the model uses (notebook 05).
    '''),
    code('''
        x_eval = data.x_test[:tutorial.pick(fast=100, full=1000)]
        result = vn.evaluation.evaluate(vae, x_eval, iwae_samples=tutorial.pick(fast=10, full=500))
        for key, value in result.items():
            print(f"{key:<16} {value:.2f}" if isinstance(value, float) else f"{key:<16} {value}")
        assert result["log_likelihood"] >= -result["neg_elbo"] - 1.0     # the IWAE bound is the tighter one
    '''),
    md(r'''
    ### A Bernoulli likelihood on grey-level pixels? What the numbers mean

    The decoder's $p(x \mid h) = \prod_d p_d^{x_d} (1 - p_d)^{1 - x_d}$ is a distribution over **binary** images,
    but MNIST's pixels are grey levels in $[0, 1]$: most are 0 (background) or near 1 (stroke), the anti-aliased
    edges lie in between. Used on grey levels, as here, in the lecture's code and in the Keras and PyTorch VAE
    examples, $-\log p(x \mid h)$ becomes the cross-entropy between Bernoulli($x_d$) and Bernoulli($p_d$). It is
    smallest at $p_d = x_d$, so the decoder learns to output the grey level, and it trains well. But it is not the
    density of any distribution over grey-level images (it does not integrate to 1 over $[0, 1]$: Loaiza-Ganem
    & Cunningham, 2019, "The continuous Bernoulli"), and even a perfect decoder pays the pixels' entropy,
    $-\sum_d [x_d \log x_d + (1 - x_d) \log(1 - x_d)]$, measured in the next cell. The numbers above are a loss
    that works, not log-likelihoods.

    **Binarizing** makes the likelihood exact: each pixel becomes 0 or 1, once (static) or afresh at every epoch
    with probability equal to its grey level (dynamic binarization, the literature's standard:
    `vn.train(..., binarize="dynamic")` on uint8 images, `vae-numpy train --binarize dynamic`). A perfect
    decoder then pays 0, and $-$ELBO and the IWAE estimate are bounds and estimates of $-\log p(x)$ that compare
    with papers: Burda et al. (2016, Table 1) report 86.76 nats for a one-stochastic-layer VAE on dynamically
    binarized MNIST. Numbers on grey levels, like the ones in this notebook, compare only with other grey-level
    runs, e.g. the pytorch/examples VAE (784-400-20, the model above; its published log shows a test loss of
    106.66 after 7 epochs), never with the papers' tables.
    '''),
    code('''
        x = data.x_test.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -(np.where(x > 0, x * np.log(x), 0.0) + np.where(x < 1, (1 - x) * np.log1p(-x), 0.0))
        floor = entropy.sum(axis=1)                               # the loss of the decoder p = x, per image
        print(f"pixels strictly between 0 and 1: {np.mean((x > 0) & (x < 1)):.0%}")
        print(f"a perfect decoder (p = x) still pays {floor.mean():.1f} nats per test image on grey levels; "
              f"on binarized images it pays 0")
        assert floor.mean() > 10 and result["reconstruction"] > floor[:len(x_eval)].mean()
    '''),
    code('''
        x_in, x_out = vn.explore.reconstructions(vae, data.x_test[:10])
        vn.plots.reconstructions_figure(x_in, x_out)
    '''),
    code('''
        vn.plots.samples_figure(vae.sample(32, seed=0))
    '''),
    md(r'''
    ## Exercises

    ### Exercise 4 (graded by hand): why log-variance?

    The encoder outputs $\log\sigma^2$, not $\sigma$ or $\sigma^2$. Give two reasons.
    '''),
    answer("nb03-log-var", 2, r'''
    1. **No constraint.** A standard deviation must be positive; the encoder's last layer is linear and can
       output any real number. $\sigma = \exp(\tfrac12\log\sigma^2)$ is positive for every output, with no
       clipping and no dead region.
    2. **Stable, well-scaled numbers.** The KL contains $\log\sigma^2$ directly, so it needs no logarithm of a
       possibly tiny $\sigma$; posterior variances span orders of magnitude, which become a modest range of
       log-variances; and the gradients, $\partial\mathrm{KL}/\partial\log\sigma^2 = (\sigma^2 - 1)/2$ and
       $\partial h / \partial \log\sigma^2 = \epsilon\sigma/2$, stay bounded as $\sigma \to 0$, where
       $\partial\mathrm{KL}/\partial\sigma = \sigma - 1/\sigma$ would explode.
    '''),
    md(r'''
    ### Exercise 5 (not graded)

    Train with `likelihood="gaussian"` (fixed $\sigma = 1$), then with `decoder_sigma="learned"`. Compare the
    reconstructions and the samples with the Bernoulli model's, and explain the difference from the size of the
    reconstruction term against the KL.
    '''),
]
