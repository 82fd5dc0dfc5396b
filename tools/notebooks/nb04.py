"""04 · Exploring the latent space: traversal, interpolation, the 2-D map and manifold, AE vs VAE sampling."""

from .cells import answer, code, imports, md, solution, tests

CELLS = [
    md(r'''
    # 04 · Exploring the latent space

    A trained VAE gives every image $x$ a posterior $q(h \mid x) = \mathcal{N}(\mu(x), \sigma^2(x))$; its mean
    $\mu(x)$ is the image's *code*, and the decoder turns any point $h$ of the latent space back into an image.
    Because the KL term pulls every $q(h \mid x)$ towards the prior $\mathcal{N}(0, I)$, the codes fill the region
    the prior covers, without holes, and decoding a draw from the prior gives a plausible image. This notebook
    looks at that space in five ways (`vn.explore` computes the arrays, `vn.plots` draws them):

    - **KL per dimension**, how many nats dimension $j$ carries (the entries sum to the model's KL term):

      $$\mathrm{KL}_j = \mathbb{E}_x\Big[-\tfrac12\big(1 + \log\sigma_j^2(x) - \mu_j^2(x) - \sigma_j^2(x)\big)\Big];$$

    - **traversal**: decode $h$ with $h_j = t$ for $t \in [-3, 3]$ prior standard deviations and the other
      dimensions fixed at an image's code;
    - **interpolation** between two codes $h_a, h_b$: straight, $(1 - t) h_a + t h_b$, or spherical, with
      $\Omega$ the angle between them,

      $$\mathrm{slerp}(h_a, h_b, t) = \frac{\sin((1 - t)\Omega)}{\sin\Omega}\, h_a
        + \frac{\sin(t\Omega)}{\sin\Omega}\, h_b;$$

    - **the 2-D map and manifold** of a model with $Z = 2$: the codes of the test set, coloured by digit, and the
      decoder evaluated over a grid of the prior's quantiles $\Phi^{-1}(q)$;
    - **AE vs VAE sampling**: decode $\epsilon \sim \mathcal{N}(0, I)$ with an autoencoder and with a VAE of the
      same size.

    Three models are trained first: a VAE and an autoencoder with $Z = 16$, and a VAE with $Z = 2$. In fast mode
    they see a thousand digits for one epoch each (the pictures are then rough); otherwise all of MNIST for 10
    epochs each, where the pictures have settled. Every cell below reuses these three models.
    '''),
    imports("exercises", inspect=False, pyplot=False),
    code('''
        data = tutorial.load_mnist(n_train=tutorial.pick(fast=1000, full=None),
                                   n_test=tutorial.pick(fast=500, full=None))
        epochs, hidden = tutorial.pick(fast=1, full=10), tutorial.pick(fast=(256,), full=(400,))
        print(data, f"; {epochs} epoch(s), hidden layers {hidden}")
        models = {"vae": vn.VAE(hidden_dims=hidden, latent_dim=16, seed=0),
                  "ae": vn.Autoencoder(hidden_dims=hidden, latent_dim=16, seed=0),
                  "vae2": vn.VAE(hidden_dims=hidden, latent_dim=2, seed=0)}
        for name, model in models.items():
            print(name)
            vn.train(model, data.x_train, data.x_test, epochs=epochs, batch_size=100, progress=False,
                     callbacks=[tutorial.print_epoch])
        vae, ae, vae2 = models["vae"], models["ae"], models["vae2"]
    '''),
    md(r'''
    A trained model is worth keeping: `model.save(path)` writes one `.npz` file (no pickle), `vn.load_model`
    reads it back, and the loaded model decodes exactly as the original.
    '''),
    code('''
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "vae.npz"
            vae.save(path)
            loaded = vn.load_model(path)
            print(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB")
        h = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
        assert np.array_equal(loaded.decode(h), vae.decode(h))
    '''),
    md(r'''
    ## Which dimensions are in use?

    A dimension with $\mathrm{KL}_j \approx 0$ has $q(h_j \mid x) = \mathcal{N}(0, 1)$ for every image: it tells
    the decoder nothing, and the decoder learns to ignore it (notebook 05 follows this up).
    '''),
    code('''
        kl = vn.explore.kl_per_dim(vae, data.x_test)
        mu, log_var = vae.encode(data.x_test)
        assert np.isclose(kl.sum(), vn.losses.gaussian_kl(mu.astype(float), log_var.astype(float)).mean())
        print(f"KL term {kl.sum():.2f} nats; dimensions above 0.1 nats: {int(np.sum(kl > 0.1))} of {len(kl)}")
        vn.plots.kl_figure(kl)
    '''),
    md(r'''
    ## Traversals

    Each row varies one latent dimension, the six with the largest KL, from $-3$ to $+3$, with the others held
    at the code of one test image. Dimensions with a large KL change the image a lot; in a well-trained model
    they often control one property (slant, width, stroke thickness), although nothing in the loss asks for it
    (notebook 05 asks for it with $\beta$).
    '''),
    code('''
        trav = vn.explore.traversal(vae, data.x_test[0], dims=6, x_for_kl=data.x_test)
        print("rows vary dimensions", trav.dims.tolist(), "; images", trav.images.shape)
        vn.plots.traversal_figure(trav)
    '''),
    md(r'''
    ## Interpolations

    Blending two images pixel by pixel superimposes them; walking between their codes passes through digits.
    Why spherical? In $Z$ dimensions a draw from $\mathcal{N}(0, I)$ has a norm close to $\sqrt{Z}$, so the
    prior's mass sits on a shell, and the straight line between two points of the shell cuts through it, towards
    the origin, where the decoder saw few codes: its midpoint has norm $\lVert h_a + h_b \rVert / 2$, less than
    the mean of the two norms (the triangle inequality), the more so the wider the angle $\Omega$. Slerp follows
    the arc instead: its midpoint is the line's pushed outwards by $1/\cos(\Omega/2)$, and between two codes of
    **equal** norm it keeps that norm all the way. Between codes of different norms (the usual case: an
    encoder's means do not sit exactly on the prior's shell, as the printed norms show) its norm moves from one
    to the other. The next cell measures both paths and checks these three facts.
    '''),
    code('''
        a = 0
        b = int(np.argmax(data.y_test != data.y_test[a]))        # the first test digit of another class
        print(f"from a {data.y_test[a]} to a {data.y_test[b]}")
        vn.plots.interpolation_figure(vn.explore.interpolations(vae, data.x_test[a], data.x_test[b], n_steps=9))
    '''),
    code('''
        h_a, h_b = vn.explore.codes(vae, data.x_test[[a, b]]).astype(np.float64)
        t = np.linspace(0, 1, 9)
        straight = (1 - t[:, None]) * h_a + t[:, None] * h_b
        spherical = vn.explore.slerp(h_a, h_b, t)
        print(f"sqrt(Z) = {np.sqrt(16):.2f}; norm of random prior draws: "
              f"{np.linalg.norm(np.random.default_rng(0).standard_normal((1000, 16)), axis=1).mean():.2f}")
        norm_line, norm_arc = np.linalg.norm(straight, axis=1), np.linalg.norm(spherical, axis=1)
        print(f"norms of the two codes: {np.linalg.norm(h_a):.2f} and {np.linalg.norm(h_b):.2f}")
        print("norm along the straight line:", np.round(norm_line, 2))
        print("norm along the slerp path:   ", np.round(norm_arc, 2))
        omega = np.arccos(h_a @ h_b / (np.linalg.norm(h_a) * np.linalg.norm(h_b)))
        print(f"angle between the codes {np.degrees(omega):.0f} degrees; at t = 0.5 the arc is "
              f"{norm_arc[4] / norm_line[4]:.2f} x as far from the origin as the line")
        assert norm_line[4] < (np.linalg.norm(h_a) + np.linalg.norm(h_b)) / 2           # the line cuts inwards
        assert np.isclose(norm_arc[4], norm_line[4] / np.cos(omega / 2))                # the arc, pushed out
        h_b_same = h_b * np.linalg.norm(h_a) / np.linalg.norm(h_b)                      # equal norms: kept
        assert np.allclose(np.linalg.norm(vn.explore.slerp(h_a, h_b_same, t), axis=1), np.linalg.norm(h_a))
    '''),
    md(r'''
    ## The 2-D latent space: map and manifold

    With $Z = 2$ the codes can be drawn directly: the axes are the two latent coordinates, `h0` and `h1`
    (numbered from 0, as the arrays and the traversal rows are). Each digit class occupies a region, and the
    regions tile the plane around the origin with no large gaps, because the KL term pulls every code towards
    $\mathcal{N}(0, I)$. (For $Z > 2$, `latent_map` projects the codes on their first two principal axes.)
    '''),
    code('''
        vn.plots.latent_map_figure(vn.explore.latent_map(vae2, data.x_test, data.y_test))
    '''),
    md(r'''
    The manifold decodes a grid over the prior, `h0` to the right and `h1` upwards: equal steps of probability
    mass, $h_i = \Phi^{-1}(q_i)$ with $q_i$ from 0.05 to 0.95, as in Kingma & Welling's figure 4. Every point of
    the grid decodes to something digit-like, and neighbouring points to similar images.
    '''),
    code('''
        vn.plots.manifold_figure(vn.explore.manifold(vae2, n=15))
    '''),
    md(r'''
    ## AE vs VAE: sampling from the prior

    An autoencoder is trained to reconstruct, nothing else: its codes sit wherever the encoder put them, at any
    scale and with holes between the classes. Decoding $\epsilon \sim \mathcal{N}(0, I)$ with it gives blobs.
    Fitting a Gaussian $\mathcal{N}(m, C)$ to its training codes helps, but the holes remain. The VAE's codes
    were pulled towards $\mathcal{N}(0, I)$ during training, so its prior samples are digits. The same
    $\epsilon$ is used in the three panels.
    '''),
    code('''
        samples = vn.explore.ae_vs_vae_samples(ae, vae, data.x_train, n=32, seed=0)
        vn.plots.ae_vs_vae_figure(samples)
    '''),
    md(r'''
    A number to go with the picture: fit $\mathcal{N}(m, C)$ to each model's codes of the training images and
    measure how far it is from the prior, in closed form:

    $$\mathrm{KL}\big(\mathcal{N}(m, C)\,\|\,\mathcal{N}(0, I)\big)
      = \tfrac12\big(\operatorname{tr} C + m^\top m - Z - \log\det C\big).$$
    '''),
    code('''
        for name, model in (("autoencoder", ae), ("VAE", vae)):
            c = vn.explore.codes(model, data.x_train).astype(np.float64)
            m, C = c.mean(axis=0), np.cov(c, rowvar=False)
            gap = 0.5 * (np.trace(C) + m @ m - len(m) - np.linalg.slogdet(C)[1])
            print(f"{name:<12} codes: mean norm {np.linalg.norm(c, axis=1).mean():6.2f}, "
                  f"KL(N(m, C) || N(0, I)) = {gap:8.2f} nats")
    '''),
    md(r'''
    ## Exercises

    ### Exercise 1 (graded): a code found by optimization instead of by the encoder

    The encoder maps an image to its code in one pass: inference is *amortized* over the data set. The code can
    also be found for one image alone, by gradient descent on the negative log joint density (the MAP code):

    $$J(h) = \sum_n \Big[-\log p(x_n \mid h_n) + \tfrac12 \lVert h_n \rVert^2\Big] + \text{const},$$

    where $-\tfrac12\lVert h\rVert^2$ is $\log p(h)$ up to a constant and $-\log p(x \mid h)$ is the Bernoulli loss of
    the decoder's logits. Write `code_objective_and_grad(params, h, x)` returning $J$ (a float, without the
    constant) and $\partial J / \partial h$ of shape (N, Z), for a decoder `dec1` (relu) then `dec_out` (logits),
    parameters named as in `vn.VAE(...).params`. This is backpropagation to the **input** of the decoder, which
    the model's own `backward()` never computes. Use `vn.layers.dense_forward`, `vn.layers.activation_forward`
    and `activation_backward`, `vn.losses.bernoulli_nll` and its backward; the library's dense backward, its
    models and its finite-difference helpers are switched off while the test runs your function.

    The test checks $\partial J/\partial h$ by finite differences (float64), then runs gradient descent from the
    encoder's codes and shows that $J$ goes below the encoder's: the difference is the *amortization gap*.
    '''),
    solution("nb04-decoder-grad", '''
        def code_objective_and_grad(params, h, x):
            """J(h) = sum_n [-log p(x_n | h_n) + |h_n|^2 / 2]. h: (N, Z), x: (N, D) -> (J, dJ/dh (N, Z))."""
            ### BEGIN SOLUTION
            a, dense1 = vn.layers.dense_forward(h, params["dec1.W"], params["dec1.b"])
            d, relu = vn.layers.activation_forward("relu", a)
            logits, _ = vn.layers.dense_forward(d, params["dec_out.W"], params["dec_out.b"])
            J = float(np.sum(vn.losses.bernoulli_nll(logits, x)) + 0.5 * np.sum(h * h))
            dlogits = vn.losses.bernoulli_nll_backward(np.ones(len(x)), logits, x)    # J sums over examples
            dd = dlogits @ params["dec_out.W"].T
            da = vn.layers.activation_backward("relu", dd, relu)
            return J, da @ params["dec1.W"].T + h                                     # + d(|h|^2 / 2)/dh
            ### END SOLUTION
    '''),
    tests("nb04-decoder-grad-tests", 4, '''
        banned = (*exercises.DENSE_BACKWARD, *exercises.MODELS, *exercises.FINITE_DIFFERENCES)
        yours = exercises.graded(code_objective_and_grad, *banned)
        small = vn.VAE(input_dim=12, hidden_dims=(8,), latent_dim=3, dtype="float64", seed=0)
        rng = np.random.default_rng(0)
        x_s, h_s = (rng.random((4, 12)) < 0.5).astype(np.float64), rng.standard_normal((4, 3))
        J, dh = yours(small.params, h_s, x_s)
        p = small.decode(h_s)
        expected = -np.sum(x_s * np.log(p) + (1 - x_s) * np.log1p(-p)) + 0.5 * np.sum(h_s ** 2)
        assert np.shape(dh) == (4, 3) and abs(J - expected) < 1e-9 * abs(expected), "J"
        numerical = vn.gradcheck.numerical_gradient(lambda hh: yours(small.params, hh, x_s)[0], h_s.copy())
        error = vn.gradcheck.array_rel_error(dh, numerical)
        print(f"dJ/dh: relative error {error:.1e} against finite differences")
        assert error < 1e-7
        # gradient descent from the encoder's codes
        h = small.encode(x_s)[0].copy()
        J_encoder = yours(small.params, h, x_s)[0]
        for _ in range(300):
            h -= 0.05 * yours(small.params, h, x_s)[1]
        J_map = yours(small.params, h, x_s)[0]
        print(f"J at the encoder's codes {J_encoder:.3f}, after 300 steps of gradient descent {J_map:.3f}")
        assert J_map < J_encoder
        ### BEGIN HIDDEN TESTS
        other = vn.VAE(input_dim=9, hidden_dims=(5,), latent_dim=2, dtype="float64", seed=4)
        x_o, h_o = rng.random((3, 9)), rng.standard_normal((3, 2)) * 2
        _, dh_o = yours(other.params, h_o, x_o)
        num_o = vn.gradcheck.numerical_gradient(lambda hh: yours(other.params, hh, x_o)[0], h_o.copy())
        assert vn.gradcheck.array_rel_error(dh_o, num_o) < 1e-7
        ### END HIDDEN TESTS
    '''),
    md(r'''
    ### Exercise 2 (graded by hand): holes

    Look at the AE's fitted-Gaussian samples and the VAE's. Explain what in the VAE's loss fills the holes
    between the classes in its latent space, and why an autoencoder whose codes happen to have mean 0 and
    covariance $I$ would still produce worse samples than the VAE.
    '''),
    answer("nb04-holes", 2, r'''
    Two terms do it. The KL term pulls each $q(h \mid x)$ towards $\mathcal{N}(0, I)$, so the codes of all the
    images together cover the prior's region instead of sitting at arbitrary places and scales. And each code
    is a *distribution*, not a point: during training the decoder sees $h = \mu + \sigma\epsilon$, a whole cloud
    around every code, and must decode every point of it to the image, so the region between neighbouring
    codes is filled with decodable points. An autoencoder with codes of mean 0 and covariance $I$ matches the
    prior only in its first two moments: its codes can still lie on a thin, clustered set with empty space in
    between, and the decoder was never trained on codes there, so a prior draw that lands in a gap decodes to a
    blend or a blob.
    '''),
    md(r'''
    ### Exercise 3 (not graded)

    Traverse the autoencoder (`vn.explore.traversal(ae, x, dims=6, x_for_kl=data.x_test)`, in units of each
    code's spread) and compare with the VAE's traversal. Then interpolate between two images of the same digit
    and of two different digits; where does the VAE's path change class?
    '''),
]
