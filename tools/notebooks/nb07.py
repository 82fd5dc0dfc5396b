"""07 · CNN and RNN encoders and decoders: im2col, the transposed convolution, backpropagation through time."""

from .cells import answer, code, md, solution, tests

CELLS = [
    md(r'''
    # 07 · CNN and RNN encoders and decoders

    The VAE of notebooks 03-05 reads an image as a flat vector of 784 pixels. The lecture's other two
    encoder-decoders read it as an image and as a sequence:

    - **CNN** (the Keras example): the encoder slides small filters over the image. A `Conv2d` with a
      $k \times k$ kernel $W$, stride $s$ and padding $p$ computes, for every output pixel $(i, j)$ and filter $o$,

      $$y_{ijo} = b_o + \sum_{p', q', c} x_{\,i s + p' - p,\ j s + q' - p,\ c}\; W_{p' q' c o},
        \qquad H_{\text{out}} = \Big\lfloor \frac{H + 2p - k}{s} \Big\rfloor + 1;$$

      the decoder upsamples with the **transposed convolution**, the backward pass of a convolution used as a
      forward pass;
    - **RNN**: the encoder reads the 28 rows one after the other, $h_t = f(x_t, h_{t-1})$, and its last state
      feeds the heads $\mu, \log\sigma^2$; the decoder emits a row of pixels per step. Gradients flow back
      through the steps (**backpropagation through time**):

      $$\frac{\partial L}{\partial h_{t-1}} = \frac{\partial L}{\partial h_t}\,
        \frac{\partial h_t}{\partial h_{t-1}} \;(+\ \text{what } h_{t-1}\text{'s own output sends}).$$

    You will see the convolution as one matrix product (**im2col**), its backward, the transposed convolution as
    the convolution's adjoint, and why gradients vanish in a vanilla RNN and less in a GRU; you will write the
    convolution's backward and a GRU step's backward yourself (graded by finite differences). The last part
    trains the package's `arch="conv"` and `arch="rnn"` VAEs. Layouts are channels-last, as in Keras: images
    $x$: (N, H, W, C), kernels $W$: (kh, kw, C, O).
    '''),
    code('''
        import inspect

        import numpy as np

        import vae_numpy as vn
        from vae_numpy import _conv_kernels, exercises, tutorial
        from vae_numpy.nn import recurrent_steps
        from vae_numpy.nn.recurrent import init_cell

        print(f"vae_numpy {vn.__version__}; fast mode (VAE_NUMPY_FAST=1): {tutorial.fast_mode()}")
    '''),
    code('''
        data = tutorial.load_mnist(n_train=tutorial.pick(fast=4000, full=None),
                                   n_test=tutorial.pick(fast=300, full=None))
        print(data)
    '''),
    md(r'''
    ## Convolution as a matrix product: im2col

    Each output pixel of a convolution reads one $k \times k \times C$ patch of the input. **im2col** copies
    every patch into one row of a matrix `cols` of shape $(N H_{\text{out}} W_{\text{out}},\ k k C)$; the
    whole convolution is then **one** matrix product with the kernel flattened to $(k k C, O)$:

    $$Y = \text{cols} \cdot W_{\text{mat}} + b, \qquad (N H_o W_o,\ kkC) \cdot (kkC,\ O).$$

    (Deep-learning "convolution" does not flip the kernel: it is a cross-correlation.) A 4 x 4 image and a
    3 x 3 kernel without padding give a 2 x 2 output, so `cols` has 4 rows of 9 pixels:
    '''),
    code('''
        x = np.arange(16.0).reshape(1, 4, 4, 1)                 # one 4x4 image, one channel: (N, H, W, C)
        cols = _conv_kernels.im2col_np(x, 1, 0, 0, np.empty((1, 2, 2, 3, 3, 1)))   # stride 1, padding 0
        print("the image:\\n", x[0, :, :, 0])
        print("im2col: one row per output pixel, the 3x3 patch it reads:\\n", cols.reshape(4, 9))

        W = np.random.default_rng(0).standard_normal((3, 3, 1, 2))            # two filters: (kh, kw, C, O)
        y = (cols.reshape(4, 9) @ W.reshape(9, 2)).reshape(1, 2, 2, 2)         # the convolution: one GEMM
        y_loop = np.zeros((1, 2, 2, 2))                                          # the definition, pixel by pixel
        for i in range(2):
            for j in range(2):
                for o in range(2):
                    y_loop[0, i, j, o] = np.sum(x[0, i:i + 3, j:j + 3, :] * W[:, :, :, o])
        print("GEMM and loop agree:", np.allclose(y, y_loop, rtol=1e-14, atol=0))
        assert np.allclose(y, y_loop, rtol=1e-14, atol=0)
    '''),
    md(r'''
    The package's `vn.nn.Conv2d` does exactly this (im2col in a Numba kernel beside its NumPy twin, then one
    BLAS product). **Stride** $s$ moves the window $s$ pixels at a time; **padding** adds zeros around the
    image. `padding="same"` pads just enough that $H_{\text{out}} = \lceil H / s \rceil$ (TensorFlow's rule:
    the total padding $\max((H_o - 1)s + k - H, 0)$ is split in two, the odd pixel at the bottom/right);
    an integer $p$ pads $p$ pixels on every side and $H_{\text{out}} = \lfloor (H + 2p - k)/s \rfloor + 1$.
    The table checks the formula on MNIST's 28 x 28 and compares each layer with the loop definition:
    '''),
    code('''
        xb = data.x_test[:2].astype(np.float64).reshape(2, 28, 28, 1)
        print(f"{'stride':>6} {'padding':>8} {'output':>14} {'formula':>8} {'vs loop':>8}")
        for s, padding in ((1, "valid"), (1, "same"), (2, "same"), (2, "valid"), (2, 1), (3, 2)):
            conv = vn.nn.materialize(vn.nn.Conv2d(4, 3, stride=s, padding=padding), (28, 28, 1), seed=0)
            y = conv.forward(xb)
            Ho = -(-28 // s) if padding == "same" else (28 + 2 * (0 if padding == "valid" else padding) - 3) // s + 1
            pad = max((Ho - 1) * s + 3 - 28, 0) // 2 if padding == "same" else (0 if padding == "valid" else padding)
            xp = np.pad(xb, ((0, 0), (pad, 3), (pad, 3), (0, 0)))      # extra zeros at the bottom/right are harmless
            Wc, bc = conv.params["W"], conv.params["b"]
            y_loop = np.zeros_like(y)
            for i in range(Ho):
                for j in range(Ho):
                    patch = xp[:, i * s:i * s + 3, j * s:j * s + 3, :]                  # (N, 3, 3, C)
                    y_loop[:, i, j] = np.tensordot(patch, Wc, axes=3) + bc
            err = vn.gradcheck.array_rel_error(y, y_loop)
            print(f"{s:6d} {padding!s:>8} {str(y.shape[1:]):>14} {Ho:8d} {err:8.1e}")
            assert y.shape[1:3] == (Ho, Ho) and err < 1e-12
    '''),
    md(r'''
    ## The backward pass, and the transposed convolution

    With $Y = \text{cols} \cdot W_{\text{mat}} + b$ a matrix product, its backward is the dense layer's
    (notebook 02), followed by the backward of im2col:

    $$\bar W_{\text{mat}} = \text{cols}^\top \bar Y, \qquad \bar b = \textstyle\sum_{\text{rows}} \bar Y,
      \qquad \bar x = \text{col2im}\big(\bar Y\, W_{\text{mat}}^\top\big).$$

    im2col copies each pixel into every patch that contains it, so its backward, **col2im**, *adds* each
    patch entry back onto the pixel it came from. The library's layer computes exactly these three formulas:
    '''),
    code('''
        rng = np.random.default_rng(1)
        conv = vn.nn.materialize(vn.nn.Conv2d(5, 3, stride=2, padding="same"), (8, 8, 3), seed=1)
        x = rng.standard_normal((2, 8, 8, 3))
        y = conv.forward(x)
        dy = rng.standard_normal(y.shape)
        dx = conv.backward(dy)
        print("x", x.shape, "-> y", y.shape)

        pad = max((4 - 1) * 2 + 3 - 8, 0) // 2                         # 'same' for 8 -> 4 at stride 2: 0 on top
        cols = _conv_kernels.im2col_np(x, 2, pad, pad, np.empty((2, 4, 4, 3, 3, 3))).reshape(32, 27)
        dW = (cols.T @ dy.reshape(32, 5)).reshape(3, 3, 3, 5)
        dcols = dy.reshape(32, 5) @ conv.params["W"].reshape(27, 5).T
        dx_mine = _conv_kernels.col2im_np(dcols.reshape(2, 4, 4, 3, 3, 3), 2, pad, pad, np.empty_like(x))
        for name, mine, layer in (("dW", dW, conv.grads["W"]), ("db", dy.sum(axis=(0, 1, 2)), conv.grads["b"]),
                                  ("dx", dx_mine, dx)):
            print(f"{name}: the formula vs the layer, relative error {vn.gradcheck.array_rel_error(mine, layer):.1e}")
            assert vn.gradcheck.array_rel_error(mine, layer) < 1e-12
    '''),
    md(r'''
    A convolution without bias is a linear map $x \mapsto Cx$ with some huge sparse matrix $C$. Its backward
    maps $\bar y \mapsto C^\top \bar y$: the **transposed convolution**. The identity that defines the
    transpose (the *adjoint*) is

    $$\langle C x,\ y \rangle = \langle x,\ C^\top y \rangle \qquad \text{for all } x, y.$$

    `vn.nn.ConvTranspose2d` computes $C^\top y$ as a forward pass: one matrix product $y\, W_{\text{mat}}^\top$
    then col2im, the same two steps as $\bar x$ above. Given the convolution's kernel it satisfies the identity
    to rounding, and it turns a 4 x 4 map back into an 8 x 8 one: the decoder's **upsampling**.
    '''),
    code('''
        convT = vn.nn.materialize(vn.nn.ConvTranspose2d(3, 3, stride=2, padding="same"), (4, 4, 5), seed=2)
        convT.params["W"][...] = conv.params["W"]           # the same kernel, (kh, kw, 3, 5) in both layers
        conv.params["b"][...] = 0.0                         # no biases: both are then linear maps
        convT.params["b"][...] = 0.0
        x, y = rng.standard_normal((2, 8, 8, 3)), rng.standard_normal((2, 4, 4, 5))
        lhs, rhs = np.sum(conv.forward(x) * y), np.sum(x * convT.forward(y))
        print(f"<Conv x, y> = {lhs:.12f}\\n<x, ConvT y> = {rhs:.12f}"
              f"   (relative difference {abs(lhs - rhs) / abs(lhs):.1e})")
        print("ConvT: (4, 4, 5) ->", convT.out_shape, "; and it is the convolution's backward:",
              np.allclose(convT.forward(y), conv.backward(y), rtol=1e-13, atol=1e-13))
        assert abs(lhs - rhs) < 1e-12 * abs(lhs)
    '''),
    md(r'''
    ### Exercise 1 (graded, 5 points): the convolution's backward

    `conv_forward` below is a complete convolution (integer padding $p$ on every side, stride $s$): it builds
    `cols` with a loop over the $k_h k_w$ kernel offsets (each offset is one strided slice of the padded image)
    and returns `cache = (x, W, stride, pad, cols)`. Write `conv_backward(dy, cache)` returning `(dx, dW, db)`
    with the shapes of `x`, `W` and `b`. Write col2im yourself: the test switches the library's convolution
    layers and im2col/col2im off while your function runs, and checks your gradients against finite
    differences in float64 for stride 1 and stride 2 (relative error below $10^{-7}$).

    *Hint:* col2im is the loop of `conv_forward` with the assignment turned into `+=` on a zero padded
    gradient; then cut the padding off.
    '''),
    solution("nb07-conv-backward", '''
        def conv_forward(x, W, b, stride=1, pad=0):
            """x: (N, H, Wd, C), W: (kh, kw, C, O), b: (O,) -> y: (N, Ho, Wo, O), cache."""
            N, H, Wd, C = x.shape
            kh, kw, _, O = W.shape
            Ho, Wo = (H + 2 * pad - kh) // stride + 1, (Wd + 2 * pad - kw) // stride + 1
            xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
            cols = np.empty((N, Ho, Wo, kh, kw, C), dtype=x.dtype)
            for p in range(kh):
                for q in range(kw):                    # output (i, j) reads padded pixel (i s + p, j s + q)
                    rows = slice(p, p + stride * (Ho - 1) + 1, stride)
                    columns = slice(q, q + stride * (Wo - 1) + 1, stride)
                    cols[:, :, :, p, q] = xp[:, rows, columns]
            y = cols.reshape(N * Ho * Wo, kh * kw * C) @ W.reshape(kh * kw * C, O) + b
            return y.reshape(N, Ho, Wo, O), (x, W, stride, pad, cols)


        def conv_backward(dy, cache):
            """dy: (N, Ho, Wo, O) -> (dx (N, H, Wd, C), dW (kh, kw, C, O), db (O,))."""
            x, W, stride, pad, cols = cache
            ### BEGIN SOLUTION
            N, H, Wd, C = x.shape
            kh, kw, _, O = W.shape
            _, Ho, Wo, _ = dy.shape
            dy2 = dy.reshape(N * Ho * Wo, O)
            dW = (cols.reshape(N * Ho * Wo, kh * kw * C).T @ dy2).reshape(W.shape)
            db = dy2.sum(axis=0)
            dcols = (dy2 @ W.reshape(kh * kw * C, O).T).reshape(N, Ho, Wo, kh, kw, C)
            dxp = np.zeros((N, H + 2 * pad, Wd + 2 * pad, C), dtype=dy.dtype)
            for p in range(kh):
                for q in range(kw):                    # col2im: every patch entry back onto its pixel
                    rows = slice(p, p + stride * (Ho - 1) + 1, stride)
                    columns = slice(q, q + stride * (Wo - 1) + 1, stride)
                    dxp[:, rows, columns] += dcols[:, :, :, p, q]
            dx = dxp[:, pad:pad + H, pad:pad + Wd]
            ### END SOLUTION
            return dx, dW, db
    '''),
    tests("nb07-conv-backward-tests", 5, '''
        banned = ("nn.Conv2d", "nn.ConvTranspose2d", "_conv_kernels.im2col_np", "_conv_kernels.col2im_np",
                  "_conv_kernels.NUMBA.im2col", "_conv_kernels.NUMBA.col2im")
        yours = exercises.graded(conv_backward, *banned, *exercises.MODELS, *exercises.FINITE_DIFFERENCES)
        rng = np.random.default_rng(0)
        for stride, pad in ((1, 0), (1, 1), (2, 1)):
            x, W, b = rng.standard_normal((2, 7, 7, 3)), rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(4)
            report = vn.gradcheck.check_function(
                forward=lambda x, W, b, s=stride, p=pad: conv_forward(x, W, b, s, p)[0],
                backward=lambda dy, x=x, W=W, b=b, s=stride, p=pad: dict(
                    zip(("x", "W", "b"), yours(dy, conv_forward(x, W, b, s, p)[1]))),
                inputs={"x": x, "W": W, "b": b}, title=f"your conv_backward, stride {stride}, padding {pad}")
            print(report)
            assert report.max_error < 1e-7
        ### BEGIN HIDDEN TESTS
        for (N, H, C, O, kh, kw, stride, pad) in ((1, 5, 1, 1, 2, 3, 1, 0), (3, 9, 2, 5, 3, 3, 3, 2),
                                                  (2, 6, 4, 3, 1, 1, 2, 0), (2, 8, 3, 2, 3, 3, 2, 1)):
            x, W, b = rng.standard_normal((N, H, H, C)), rng.standard_normal((kh, kw, C, O)), rng.standard_normal(O)
            y, cache = conv_forward(x, W, b, stride, pad)
            dy = rng.standard_normal(y.shape)
            dy_before, x_before = dy.copy(), x.copy()
            dx, dW, db = yours(dy, cache)
            assert np.array_equal(dy, dy_before) and np.array_equal(x, x_before), "inputs were modified"
            assert np.shape(dx) == x.shape and np.shape(dW) == W.shape and np.shape(db) == b.shape
            layer = vn.nn.materialize(vn.nn.Conv2d(O, (kh, kw), stride=stride, padding=pad), (H, H, C))
            layer.params["W"][...], layer.params["b"][...] = W, b
            assert np.allclose(layer.forward(x), y, rtol=1e-12, atol=1e-12)
            dx_ref = layer.backward(dy)
            for mine, ref in ((dx, dx_ref), (dW, layer.grads["W"]), (db, layer.grads["b"])):
                assert vn.gradcheck.array_rel_error(mine, ref) < 1e-10
        ### END HIDDEN TESTS
    '''),
    md(r'''
    ## Backpropagation through time

    A recurrent layer applies one cell at every step with the **same** weights. The vanilla (Elman) RNN:

    $$h_t = \tanh(x_t W_x + h_{t-1} W_h + b), \qquad
      \frac{\partial h_t}{\partial h_{t-1}} = \operatorname{diag}(1 - h_t^2)\, W_h^\top .$$

    Backpropagation through time runs the step backwards from $t = T$ to $1$: the gradient entering step
    $t$ is what $h_t$'s own use sends plus what step $t + 1$ sent back, and each weight's gradient is the sum
    over the steps. Here an image is a sequence of $T = 28$ rows of 28 pixels, and the loss reads only the
    last state, $L = \sum h_T \odot g$, as the VAE's encoder does. The package's cs231n-style step functions:
    '''),
    code('''
        print(inspect.getsource(recurrent_steps.rnn_step_forward))
        print(inspect.getsource(recurrent_steps.rnn_step_backward))
        print(inspect.getsource(recurrent_steps.sequence_backward))
    '''),
    code('''
        H, n_seq = 16, 4
        x_seq = data.x_test[:n_seq].astype(np.float64).reshape(n_seq, 28, 28)    # (N, T, F): rows as steps
        params = init_cell("rnn", 28, H, np.random.default_rng(0), np.float64, "he-xavier")
        h0 = np.zeros((n_seq, H))
        g = np.random.default_rng(1).standard_normal((n_seq, H))
        hs, cache = recurrent_steps.sequence_forward("rnn", x_seq, h0, params)
        dhs = np.zeros_like(hs)
        dhs[:, -1] = g                                          # only the last state is read
        dx, dh0, dparams = recurrent_steps.sequence_backward(dhs, cache)
        loss = lambda: np.sum(recurrent_steps.sequence_forward("rnn", x_seq, h0, params)[0][:, -1] * g)
        for name in ("Wh", "Wx", "b"):
            numerical = vn.gradcheck.numerical_gradient(lambda _: loss(), params[name])
            err = vn.gradcheck.array_rel_error(dparams[name], numerical)
            print(f"d{name} {str(params[name].shape):>9}: BPTT vs finite differences, relative error {err:.1e}")
            assert err < 1e-7
    '''),
    md(r'''
    ### Vanishing gradients

    The gradient reaching $h_t$ is $g$ multiplied by $T - t$ Jacobians $\operatorname{diag}(1 - h^2) W_h^\top$.
    The tanh's slope is at most 1, so unless $W_h$ stretches the vector, each step shrinks it: the gradient
    decays geometrically with the distance, and the first rows of the image hardly influence the weights' update.

    The **GRU** (torch's convention, `recurrent_steps`' docstring) mixes the old state and a candidate $n_t$
    with an *update gate* $z_t = \sigma(\cdot) \in (0, 1)$:

    $$h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
      \quad\Rightarrow\quad \frac{\partial h_t}{\partial h_{t-1}} = \operatorname{diag}(z_t) + \dots$$

    The term $\operatorname{diag}(z_t)$ is a path that goes through **no** weight matrix and no tanh: where
    the gate is open ($z \to 1$) the gradient passes unchanged, and the network *learns* where to open it. At
    initialisation $z \approx 1/2$; biasing the update gate towards remembering ($b_z = 3$, $z \approx 0.95$,
    like the LSTM's forget-gate bias of 1) should keep the gradient alive over all 28 rows. The cell below
    measures $\lVert \partial L / \partial h_t \rVert$ on the same images, running the step backwards by
    hand, for the vanilla RNN with two initialisations of $W_h$ and for the GRU with and without that bias:
    '''),
    code('''
        norms = {}
        for label, cell, init, bias_z in (("RNN, W_h uniform", "rnn", "torch", 0.0),
                                          ("RNN, W_h orthogonal", "rnn", "he-xavier", 0.0),
                                          ("GRU", "gru", "he-xavier", 0.0), ("GRU, b_z = 3", "gru", "he-xavier", 3.0)):
            p = init_cell(cell, 28, H, np.random.default_rng(0), np.float64, init)
            if cell == "gru":
                p["bx"][H:2 * H] = bias_z                         # the update gate's block of [r | z | n]
            _, (_, caches) = recurrent_steps.sequence_forward(cell, x_seq, h0, p)
            step_backward = recurrent_steps.STEPS[cell][1]
            dh, norm = g, np.empty(28)
            for t in reversed(range(28)):
                norm[t] = np.linalg.norm(dh)                    # ||dL/dh_t||, t = 28 .. 1
                _, dh, _ = step_backward(dh, caches[t])
            norms[label] = norm
            print(f"{label:<20} ||dL/dh_1|| / ||dL/dh_28|| = {norm[0] / norm[-1]:.1e}")
        ratio = {k: v[0] / v[-1] for k, v in norms.items()}
        assert ratio["RNN, W_h uniform"] < 1e-3 * ratio["RNN, W_h orthogonal"]
        assert ratio["GRU"] < ratio["RNN, W_h orthogonal"] < 0.1 < ratio["GRU, b_z = 3"]
    '''),
    code('''
        fig, ax = vn.plots.subplots(figsize=(6, 3))
        for label, norm in norms.items():
            ax.semilogy(np.arange(1, 29), norm, label=label)
        ax.set(xlabel="step t (image row)", ylabel="||dL/dh_t||", title="The gradient of a loss on h_28, going back")
        ax.legend()
        fig
    '''),
    md(r'''
    With a random $W_h$ whose singular values are mostly below 1 (PyTorch's uniform initialisation) the vanilla
    RNN's gradient all but vanishes over 28 rows; an orthogonal $W_h$ (the package's initialisation) leaves only
    the tanh's slope to shrink it, still by more than a factor of 10. The GRU at initialisation loses even more,
    since $z \approx 1/2$ halves the direct path at every step; but that gate is learned, and opened
    ($b_z = 3$) it carries the gradient over all 28 rows, losing less than a factor of 10 (the printed ratios).
    The gate lets the network choose what to remember and so receive a gradient from far back: that is why
    `arch="rnn"` uses a GRU by default (the vanilla cell is selectable).

    ### Exercise 2 (graded, 4 points): one GRU step backward

    With $g_x = x W_x + b_x$ and $g_h = h_{t-1} W_h + b_h$, each (N, 3H) and split into the blocks
    $[r \mid z \mid n]$:

    $$r = \sigma(g_{x,r} + g_{h,r}),\quad z = \sigma(g_{x,z} + g_{h,z}),\quad
      n = \tanh(g_{x,n} + r \odot g_{h,n}),\quad h = (1 - z) \odot n + z \odot h_{t-1}.$$

    Write `gru_step_backward(dh, cache)` for the cache of `recurrent_steps.gru_step_forward`,
    `(x, h_prev, r, z, n, gh_n, params)`, returning `(dx, dh_prev, dparams)` with `dparams` a dict of the
    gradients of `"Wx", "Wh", "bx", "bh"`. Note that $h_{t-1}$ reaches $h$ by two paths and that $r$ multiplies
    only the $n$ block of $g_h$. The library's step and sequence backward passes and its recurrent layers are
    switched off while the test runs your function.
    '''),
    solution("nb07-gru-backward", '''
        def gru_step_backward(dh, cache):
            """dh: (N, H) -> (dx (N, F), dh_prev (N, H), {"Wx": (F, 3H), "Wh": (H, 3H), "bx": (3H,), "bh": (3H,)})."""
            x, h_prev, r, z, n, gh_n, params = cache
            ### BEGIN SOLUTION
            dn = dh * (1 - z)
            dz = dh * (h_prev - n)
            da_n = dn * (1 - n ** 2)
            da_z = dz * z * (1 - z)
            da_r = da_n * gh_n * r * (1 - r)
            dgx = np.concatenate([da_r, da_z, da_n], axis=1)
            dgh = np.concatenate([da_r, da_z, da_n * r], axis=1)
            dx = dgx @ params["Wx"].T
            dh_prev = dh * z + dgh @ params["Wh"].T
            dparams = {"Wx": x.T @ dgx, "Wh": h_prev.T @ dgh, "bx": dgx.sum(axis=0), "bh": dgh.sum(axis=0)}
            ### END SOLUTION
            return dx, dh_prev, dparams
    '''),
    tests("nb07-gru-backward-tests", 4, '''
        yours = exercises.graded(gru_step_backward, "nn.recurrent_steps.gru_step_backward",
                                 "nn.recurrent_steps.sequence_backward", "_rnn_kernels.gru_cell_backward_np",
                                 "_rnn_kernels.NUMBA.gru_cell_backward",
                                 "nn.GRU", "nn.RNN", "nn.RecurrentDecoder", *exercises.MODELS,
                                 *exercises.FINITE_DIFFERENCES)
        rng = np.random.default_rng(0)
        N, F, H = 3, 5, 4
        p = init_cell("gru", F, H, rng, np.float64, "torch")
        p = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in p.items()}      # nonzero biases too
        x, h_prev = rng.standard_normal((N, F)), rng.standard_normal((N, H))
        inputs = {"x": x, "h_prev": h_prev, **p}
        step = lambda x, h_prev, Wx, Wh, bx, bh: recurrent_steps.gru_step_forward(
            x, h_prev, {"Wx": Wx, "Wh": Wh, "bx": bx, "bh": bh})
        report = vn.gradcheck.check_function(
            forward=lambda **a: step(**a)[0],
            backward=lambda dh: (lambda dx, dh_prev, dp: {"x": dx, "h_prev": dh_prev, **dp})(
                *yours(dh, step(**inputs)[1])),
            inputs=inputs, title="your gru_step_backward")
        print(report)
        assert report.max_error < 1e-7 and len(report.rows) == 6
        ### BEGIN HIDDEN TESTS
        for N, F, H in ((1, 1, 1), (4, 7, 3), (2, 3, 6)):
            p = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in init_cell("gru", F, H, rng, np.float64,
                                                                               "he-xavier").items()}
            x, h_prev = rng.standard_normal((N, F)), rng.standard_normal((N, H))
            _, cache = recurrent_steps.gru_step_forward(x, h_prev, p)
            dh = rng.standard_normal((N, H))
            dh_before = dh.copy()
            dx, dh_prev, dp = yours(dh, cache)
            assert np.array_equal(dh, dh_before), "dh was modified"
            ref = recurrent_steps.gru_step_backward(dh, cache)
            assert vn.gradcheck.array_rel_error(dx, ref[0]) < 1e-10
            assert vn.gradcheck.array_rel_error(dh_prev, ref[1]) < 1e-10
            assert set(dp) == {"Wx", "Wh", "bx", "bh"}
            for k in dp:
                assert vn.gradcheck.array_rel_error(dp[k], ref[2][k]) < 1e-10, k
        ### END HIDDEN TESTS
    '''),
    md(r'''
    ## The lecture's conv VAE and rnn VAE

    The package builds both from these layers: `vn.VAE(arch="conv")` is the Keras example (encoder Conv2d 32
    and 64 filters, 3 x 3, stride 2, 'same', a Dense 16; decoder Dense 7 x 7 x 64, then ConvTranspose2d
    64 and 32 at stride 2 and a last one to one channel of logits), `vn.VAE(arch="rnn")` a GRU that reads the
    rows and a GRU decoder that emits a row of logits per step. The VAE itself (the heads $\mu, \log\sigma^2$,
    the sampling, the KL, the likelihood) is the same as in notebook 03; the API takes x: (N, 784) for every
    arch. Both get a 4-dimensional latent space, which the prior's samples fill better than a larger one.

    The full run trains the lecture's sizes (channels 32 and 64, a GRU of 128 states) on all of MNIST for 3
    epochs, in batches of 100 with Adam's usual step 0.001. Fast mode has to show digits within seconds, and
    these models start slowly (at first they only learn the mean digit), so it trims them: half the channels
    (16 and 32), 64 states, the 4,000 embedded training digits in batches of 32 with a step of 0.01 (more and
    larger steps for the same work), 2 epochs for the conv VAE and 5 for the cheaper rnn VAE. Both modes
    warm up the KL weight over the first epoch (`beta_warmup=1`, notebook 05): trained without it, the conv
    VAE's `Dense(16, relu)` units can all die in the first epoch, and the model collapses to the mean digit.
    '''),
    code('''
        sizes = {"conv": {"channels": tutorial.pick(fast=(16, 32), full=(32, 64))},
                 "rnn": {"state_size": tutorial.pick(fast=64, full=128)}}
        epochs = tutorial.pick(fast={"conv": 2, "rnn": 5}, full={"conv": 3, "rnn": 3})
        batch_size, lr = tutorial.pick(fast=(32, 1e-2), full=(100, 1e-3))
        models = {name: vn.VAE(arch=name, latent_dim=4, seed=0, **sizes[name]) for name in sizes}
        mlp_params = vn.VAE(latent_dim=4, seed=0).n_params                    # the default 784-400-4 MLP
        for part in ("encoder", "decoder", "output"):                        # the conv VAE, layer by layer
            stack = getattr(models["conv"], part)
            print(f"{part:<8}", " -> ".join(f"{type(layer).__name__} {layer.out_shape}" for layer in stack))
        print(f"parameters: conv {models['conv'].n_params:,}, rnn {models['rnn'].n_params:,}, mlp {mlp_params:,}")
        assert models["conv"].n_params < mlp_params and models["rnn"].n_params < mlp_params
    '''),
    md(r'''
    The decoder's two stride-2 transposed convolutions upsample 7 x 7 to 14 x 14 to 28 x 28; the last one,
    at stride 1, maps the 32 channels (16 in fast mode) to one channel of logits. Both models have fewer
    parameters than the MLP VAE (printed above): the convolution shares its filters across positions, the GRU
    its weights across the rows. Each is trained with the settings above; the test -ELBO is measured before and after:
    '''),
    code('''
        before = {name: vn.evaluation.elbo(model, data.x_test)["neg_elbo"] for name, model in models.items()}
        for name, model in models.items():
            print(f"{name}: {epochs[name]} epoch(s) on {len(data.x_train):,} images, batches of {batch_size}, "
                  f"Adam lr {lr}")
            vn.train(model, data.x_train, data.x_test, epochs=epochs[name], batch_size=batch_size,
                     optimizer=vn.Adam(model.params, lr=lr), beta_warmup=1, progress=False,
                     callbacks=[tutorial.print_epoch])
        after = {name: vn.evaluation.elbo(model, data.x_test)["neg_elbo"] for name, model in models.items()}
        for name in models:
            print(f"{name:<5} test -ELBO {before[name]:7.1f} -> {after[name]:7.1f} nats")
        assert all(after[name] < before[name] for name in models)
    '''),
    md(r'''
    Training lowered both models' test -ELBO (asserted above). Which is lower after so short a run depends on
    the mode and the settings and is no verdict on the architectures: a fair comparison needs all of MNIST,
    the same budget and many epochs.
    The reconstructions (inputs above, reconstructions below) and samples from the prior, for the conv VAE and
    then the rnn VAE:
    '''),
    code('''
        x_in, x_out = vn.explore.reconstructions(models["conv"], data.x_test[:10])
        vn.plots.reconstructions_figure(x_in, x_out, title="conv VAE: inputs above their reconstructions")
    '''),
    code('''
        vn.plots.samples_figure(vn.explore.prior_samples(models["conv"], n=32, seed=0),
                                title="conv VAE: samples from the prior N(0, I)")
    '''),
    code('''
        x_in, x_out = vn.explore.reconstructions(models["rnn"], data.x_test[:10])
        vn.plots.reconstructions_figure(x_in, x_out, title="rnn VAE: inputs above their reconstructions")
    '''),
    code('''
        vn.plots.samples_figure(vn.explore.prior_samples(models["rnn"], n=32, seed=0),
                                title="rnn VAE: samples from the prior N(0, I)")
    '''),
    md(r'''
    ## Exercises
    '''),
    md(r'''
    ### Exercise 3 (graded by hand, 2 points): what a convolution assumes

    The encoder's first layer, `Conv2d(32, 3, stride=2, padding="same")` on a 28 x 28 x 1 image, has
    $3 \cdot 3 \cdot 1 \cdot 32 + 32 = 320$ parameters and outputs 14 x 14 x 32. How many parameters would a
    `Dense` layer need to map the 784 pixels to an output of the same size? What do the convolution's fewer
    parameters assume about images that the dense layer does not?
    '''),
    answer("nb07-assumes", 2, r'''
    The output has $14 \cdot 14 \cdot 32 = 6272$ units, so a dense layer needs $784 \cdot 6272 + 6272 =
    4{,}923{,}520$ parameters, about 15,000 times more. The convolution assumes **locality** (an output pixel
    depends only on a small neighbourhood of the input) and **translation equivariance** (the same feature
    detector is useful everywhere in the image, so the weights are shared across positions: a shifted input
    gives a shifted output). The dense layer could learn any map, including ones that are not local or not
    shift-equivariant, but it must learn each position separately.
    '''),
    md(r'''
    ### Exercise 4 (not graded)

    Train `vn.VAE(arch="rnn", cell="rnn")` (the vanilla cell) beside the GRU for the same epochs. Which
    reaches the lower test -ELBO? Then redo the gradient-norm plot with the trained GRU encoder's parameters
    (`model.params["encoder.1.Wx"]`, `"encoder.1.Wh"`, `"encoder.1.bx"`, `"encoder.1.bh"`, in float64): how
    far back does its gradient reach now, and how open is its update gate $z$ on average?
    '''),
]
