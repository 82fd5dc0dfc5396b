"""02 · An autoencoder from scratch: dense layers, manual backprop, gradient checking."""

from .cells import answer, code, imports, md, solution, tests

CELLS = [
    md(r'''
    # 02 · An autoencoder from scratch

    Before the VAE, its deterministic skeleton. An autoencoder compresses an image $x \in [0, 1]^{784}$ into a
    short code $h$ (the lecture's letter for the latent variable, used in every notebook) and decodes it back;
    both halves are stacks of dense layers:

    $$a = x W + b, \qquad y = \mathrm{relu}(a) = \max(a, 0).$$

    The decoder outputs logits $\ell$ of a Bernoulli distribution per pixel and the loss is the negative
    log-likelihood, the binary cross-entropy summed over the pixels and averaged over the batch:

    $$L = \frac{1}{N} \sum_n \sum_d \big[\max(\ell_{nd}, 0) - \ell_{nd}\, x_{nd}
          + \log(1 + e^{-|\ell_{nd}|})\big], \qquad \frac{\partial L}{\partial \ell_{nd}}
          = \frac{\sigma(\ell_{nd}) - x_{nd}}{N}.$$

    **Backpropagation** is the chain rule applied layer by layer, from the loss back to the input. Each layer
    keeps in a *cache* what its backward pass needs. For a dense layer with upstream gradient
    $\bar{y} = \partial L / \partial y$ of shape (N, O):

    $$\frac{\partial L}{\partial x} = \bar{y}\, W^\top, \qquad \frac{\partial L}{\partial W} = x^\top \bar{y},
      \qquad \frac{\partial L}{\partial b} = \sum_n \bar{y}_n,$$

    and for the ReLU, $\partial L / \partial a = \bar{y} \odot [y > 0]$.

    **Gradient checking** proves a backward pass right: compare it with central differences
    $\big(f(\theta + h e_i) - f(\theta - h e_i)\big) / 2h$ in float64 and require a relative error below
    $10^{-7}$ (`vn.gradcheck`).

    You will write the dense layer's backward pass and then backpropagate through a whole autoencoder by hand;
    both are graded by finite differences. Then the package's `vn.Autoencoder` is checked the same way and
    trained on MNIST.
    '''),
    imports("exercises", pyplot=False),
    md(r'''
    ## The dense layer

    The package's forward pass (`vn.layers`) returns the output and the cache `(x, W)`:
    '''),
    code('''
        print(inspect.getsource(vn.layers.dense_forward))
    '''),
    md(r'''
    ### Exercise 1 (graded): the dense layer's backward pass

    Write `dense_backward(dout, cache)` for $y = x W + b$: `dout` is $\partial L / \partial y$ of shape (N, O) and
    `cache = (x, W)` with x: (N, I), W: (I, O). Return `(dx, dW, db)` with the shapes of x, W and b. Do not
    modify `dout` or the cache. The graded test switches off the library's own backward passes
    (`vn.layers.dense_backward`, the models) and its finite-difference helpers while it runs your function:
    calling them fails with "write this yourself".
    '''),
    solution("nb02-dense-backward", '''
        def dense_backward(dout, cache):
            """Gradients of y = x W + b. dout: (N, O), cache = (x (N, I), W (I, O)) -> (dx, dW, db)."""
            x, W = cache
            ### BEGIN SOLUTION
            dx = dout @ W.T
            dW = x.T @ dout
            db = dout.sum(axis=0)
            ### END SOLUTION
            return dx, dW, db
    '''),
    tests("nb02-dense-backward-tests", 3, '''
        yours = exercises.graded(dense_backward, *exercises.DENSE_BACKWARD, *exercises.MODELS,
                                 *exercises.FINITE_DIFFERENCES)
        rng = np.random.default_rng(0)
        x, W, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
        report = vn.gradcheck.check_function(
            forward=lambda x, W, b: vn.layers.dense_forward(x, W, b)[0],
            backward=lambda dout: dict(zip(("x", "W", "b"), yours(dout, (x, W)))),
            inputs={"x": x, "W": W, "b": b}, title="your dense_backward")
        print(report)
        assert report.max_error < 1e-7
        ### BEGIN HIDDEN TESTS
        for N, I, O in ((1, 3, 2), (7, 2, 6)):
            x, W, b = rng.standard_normal((N, I)), rng.standard_normal((I, O)), rng.standard_normal(O)
            dout = rng.standard_normal((N, O))
            dout_before, x_before = dout.copy(), x.copy()
            dx, dW, db = yours(dout, (x, W))
            assert np.array_equal(dout, dout_before) and np.array_equal(x, x_before), "inputs were modified"
            assert np.shape(dx) == (N, I) and np.shape(dW) == (I, O) and np.shape(db) == (O,)
            for mine, ref in zip((dx, dW, db), vn.layers.dense_backward(dout, (x, W)), strict=True):
                assert vn.gradcheck.array_rel_error(mine, ref) < 1e-12
        ### END HIDDEN TESTS
    '''),
    md(r'''
    ## Why float64, and how small a step

    A central difference has two errors: truncation, $O(h^2)$, and round-off, about
    $\varepsilon_{\text{machine}} |f| / h$. Their sum is smallest near $h = \varepsilon^{1/3}$: about $10^{-5}$ in
    float64 ($\varepsilon = 2.2 \times 10^{-16}$), but $5 \times 10^{-3}$ in float32 ($\varepsilon = 1.2 \times
    10^{-7}$), where the best attainable error is about $10^{-5}$, far above the $10^{-7}$ tolerance. That is why
    every gradient check in this course runs in float64 (models take `dtype="float64"`). The sweep below
    measures one partial derivative of $f(W) = \sum \tanh(x W + b) \odot \bar{y}$ with respect to $W_{00}$ in
    both precisions.
    '''),
    code('''
        print(inspect.getsource(vn.gradcheck.numerical_gradient))
    '''),
    code('''
        rng = np.random.default_rng(1)
        x, W, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
        dout = rng.standard_normal((4, 3))
        y = np.tanh(x @ W + b)
        exact = (x.T @ (dout * (1 - y ** 2)))[0, 0]      # df/dW[0, 0], analytic
        steps = np.logspace(-9, -1, 17)
        errors = {}
        for dtype in (np.float64, np.float32):
            xd, bd, dd = x.astype(dtype), b.astype(dtype), dout.astype(dtype)
            errs = []
            for h in steps:
                Wp, Wm = W.astype(dtype), W.astype(dtype)
                Wp[0, 0] += dtype(h)
                Wm[0, 0] -= dtype(h)
                fp = np.sum(np.tanh(xd @ Wp + bd) * dd, dtype=dtype)
                fm = np.sum(np.tanh(xd @ Wm + bd) * dd, dtype=dtype)
                step = float(Wp[0, 0]) - float(Wm[0, 0])     # the step really taken, after rounding W +- h
                errs.append(abs(float(fp - fm) / step - exact) / abs(exact) if step else 1.0)
            errors[np.dtype(dtype).name] = errs
        fig, ax = vn.plots.subplots(figsize=(5.5, 3.5))
        for name, errs in errors.items():
            ax.loglog(steps, errs, "o-", label=name)
        ax.axhline(1e-7, color="k", ls=":", label="tolerance 1e-7")
        ax.set(xlabel="step h", ylabel="relative error", title="Central differences: round-off vs truncation")
        ax.legend()
        print(f"best float64 error {min(errors['float64']):.1e}, best float32 error {min(errors['float32']):.1e}")
        assert min(errors["float64"]) < 1e-8 and min(errors["float32"]) > 1e-6
        fig
    '''),
    md(r'''
    ## Backpropagation through a whole autoencoder

    `vn.Autoencoder(input_dim, hidden_dims=(H,), latent_dim=Z)` is four dense layers, named as in its
    `params` dict:

    | layer | shape of W | activation after it |
    |---|---|---|
    | `enc1` | (D, H) | relu |
    | `enc_z` | (H, Z) | linear: the code h |
    | `dec1` | (Z, H) | relu |
    | `dec_out` | (H, D) | linear: the logits |

    The package gives each piece as a forward/backward pair: `vn.layers.dense_forward` / `dense_backward`,
    `vn.layers.activation_forward(name, a)` / `activation_backward(name, dy, cache)` (names `"relu"`,
    `"linear"`), and `vn.losses.bernoulli_nll(logits, x)` (per example, shape (N,)) /
    `vn.losses.bernoulli_nll_backward(dloss, logits, x)`.

    ### Exercise 2 (graded): forward and backward by hand

    Write `ae_forward(params, x)`, returning the mean loss (a float) and a cache, and `ae_backward(cache)`,
    returning a dict with a gradient for every key of `params`. Use the package's forward pieces, its
    activation backward and its loss gradient, and **your** `dense_backward`: the library's dense backward, its
    models and its finite-difference helpers are switched off while the test runs your functions. The test
    compares your loss with `vn.Autoencoder.forward` and your gradients with finite differences of your own
    loss.
    '''),
    solution("nb02-ae-backprop", '''
        LAYERS = (("enc1", "relu"), ("enc_z", "linear"), ("dec1", "relu"), ("dec_out", "linear"))


        def ae_forward(params, x):
            """Mean Bernoulli negative log-likelihood of the autoencoder. x: (N, D) -> (loss, cache)."""
            ### BEGIN SOLUTION
            caches = []
            y = x
            for name, act in LAYERS:
                a, dense_cache = vn.layers.dense_forward(y, params[name + ".W"], params[name + ".b"])
                y, act_cache = vn.layers.activation_forward(act, a)
                caches.append((name, act, dense_cache, act_cache))
            loss = float(vn.losses.bernoulli_nll(y, x).mean())
            return loss, (caches, y, x)
            ### END SOLUTION


        def ae_backward(cache):
            """Gradients of the mean loss: a dict name -> array, one per parameter of the autoencoder."""
            ### BEGIN SOLUTION
            caches, logits, x = cache
            N = len(x)
            dy = vn.losses.bernoulli_nll_backward(np.full(N, 1.0 / N), logits, x)   # the mean: each example 1/N
            grads = {}
            for name, act, dense_cache, act_cache in reversed(caches):
                da = vn.layers.activation_backward(act, dy, act_cache)
                dy, grads[name + ".W"], grads[name + ".b"] = dense_backward(da, dense_cache)
            return grads
            ### END SOLUTION
    '''),
    tests("nb02-ae-backprop-tests", 4, '''
        banned = (*exercises.DENSE_BACKWARD, *exercises.MODELS, *exercises.FINITE_DIFFERENCES)
        forward, backward = exercises.graded(ae_forward, *banned), exercises.graded(ae_backward, *banned)
        ae = vn.Autoencoder(input_dim=12, hidden_dims=(8,), latent_dim=3, dtype="float64", seed=0)
        x = np.random.default_rng(2).random((5, 12))
        loss, cache = forward(ae.params, x)
        print(f"your loss {loss:.6f}, vn.Autoencoder {ae.forward(x):.6f}")
        assert abs(loss - ae.forward(x)) < 1e-10 * abs(loss)
        grads = backward(cache)
        assert set(grads) == set(ae.params), f"one gradient per parameter: {sorted(ae.params)}"
        for name, p in ae.params.items():
            numerical = vn.gradcheck.numerical_gradient(lambda _: ae_forward(ae.params, x)[0], p)
            error = vn.gradcheck.array_rel_error(grads[name], numerical)
            print(f"{name:<10} relative error {error:.1e}")
            assert error < 1e-7, name
        ### BEGIN HIDDEN TESTS
        ae2 = vn.Autoencoder(input_dim=9, hidden_dims=(6,), latent_dim=2, dtype="float64", seed=3)
        x2 = np.random.default_rng(4).random((3, 9))
        loss2, cache2 = forward(ae2.params, x2)
        ae2.forward(x2)
        ae2.backward()
        grads2 = backward(cache2)
        for name in ae2.params:
            assert vn.gradcheck.array_rel_error(grads2[name], ae2.grads[name]) < 1e-10, name
        ### END HIDDEN TESTS
    '''),
    md(r'''
    ## The package's autoencoder, checked the same way

    `vn.Autoencoder` does what you just wrote, with every parameter a view into one flat buffer (so that the
    optimizer updates them in one pass) and reusable work arrays. `vn.gradcheck.check_model` compares its
    `backward()` with finite differences of `forward()` for every parameter and returns a table;
    `assert_ok()` raises if a row fails. The same check passes for the VAE of the next notebook.
    '''),
    code('''
        x_small = np.random.default_rng(0).random((6, 20))
        for model in (vn.Autoencoder(20, (16,), 4, dtype="float64", seed=0),
                      vn.Autoencoder(20, (16, 12), 4, activation="tanh", dtype="float64", seed=1)):
            print(vn.gradcheck.check_model(model, x_small).assert_ok(), "\\n")
    '''),
    md(r'''
    ## Training on MNIST

    The training loop is four lines: forward, backward, an optimizer step, repeat over minibatches. Here it is
    written out for the first pass over the data, with `vn.Adam`; `vn.train` then does the same for the further
    epochs, with shuffling, a validation set, a history and a divergence guard (its epochs are numbered from 1
    again). In fast mode (`VAE_NUMPY_FAST=1`) the data are a thousand digits, one pass written out and one
    more by `vn.train`; otherwise all of MNIST (downloaded once, or the 5,000 digits embedded in the package
    when offline), one pass written out and nine by `vn.train`: ten in all, as the cells print.
    '''),
    code('''
        data = tutorial.load_mnist(n_train=tutorial.pick(fast=1000, full=None),
                                   n_test=tutorial.pick(fast=500, full=None))
        print(data)
        ae = vn.Autoencoder(input_dim=784, hidden_dims=(256,), latent_dim=16, seed=0)   # float32, to train
        opt = vn.Adam(ae.params, lr=1e-3)
        batch_size = 100
        n_steps = -(-len(data.x_train) // batch_size)
        for i, start in enumerate(range(0, len(data.x_train), batch_size)):
            xb = data.x_train[start:start + batch_size]
            loss = ae.forward(xb)            # mean -log p(x | h) over the batch, in nats
            ae.backward()                    # fills ae.grads
            opt.step(ae.grads)               # updates ae.params in place
            if i % max(1, n_steps // 8) == 0 or i == n_steps - 1:
                print(f"step {i:3d} of {n_steps}: loss {loss:7.2f} nats")
    '''),
    code('''
        more_epochs = tutorial.pick(fast=1, full=9)
        history = vn.train(ae, data.x_train, data.x_test, epochs=more_epochs, optimizer=opt,
                           progress=False, callbacks=[tutorial.print_epoch])
        print(f"{1 + len(history)} passes over the {len(data.x_train):,} training images in all: "
              f"one written out above, {len(history)} by vn.train")
        assert len(history) == more_epochs
    '''),
    code('''
        x_in, x_out = vn.explore.reconstructions(ae, data.x_test[:10])
        vn.plots.reconstructions_figure(x_in, x_out)
    '''),
    md(r'''
    The reconstructions are good, but an autoencoder is not a generative model: nothing tells us which codes
    the decoder can decode. Notebook 04 decodes random codes from this kind of model and from a VAE, side by
    side. The VAE (notebook 03) fixes it by making the code a distribution and pulling it towards $\mathcal N(0, I)$.

    ## Exercises
    '''),
    md(r'''
    ### Exercise 3 (graded by hand): where gradient checks break

    The package checks the ReLU away from its kink (`vn.gradcheck` shifts the inputs by 0.1). What goes wrong
    with a central difference when some pre-activation $a$ lies within $h$ of 0, and why is it not a bug of the
    backward pass?
    '''),
    answer("nb02-kink", 1, r'''
    The ReLU is not differentiable at 0. If $|a| < h$, the two evaluations $a \pm h$ fall on both sides of the
    kink, and the central difference measures the average slope, $\approx 1/2$ for that unit, while the backward
    pass uses the one-sided derivative (0 or 1). The relative error for that entry is then of order 1 although
    both the forward and the backward are right. The fix is in the test, not the layer: keep the inputs away
    from the kink, or use a smooth activation (tanh, softplus) for the check.
    '''),
    md(r'''
    ### Exercise 4 (not graded)

    Train with `latent_dim=2` and `latent_dim=64`. How do the reconstructions and the final loss change? Plot
    the 2-D codes of the test set, coloured by `data.y_test` (`vn.explore.latent_map`, shown in notebook 04).
    '''),
]
