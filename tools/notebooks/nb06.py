"""06 · Making it fast: float32 vs float64, Numba kernels and Adam, profiling an epoch."""

from .cells import answer, code, imports, md, solution, tests

CELLS = [
    md(r'''
    # 06 · Making it fast

    A NumPy VAE can train an MNIST epoch as fast as a deep-learning framework on the same CPU, if it spends its
    time where the work is. An epoch of a 784-400-20 VAE does three kinds of work:

    - **matrix products**, three per dense layer (I, O) and batch: $xW$ forward, $x^\top \bar{y}$ and
      $\bar{y}W^\top$ backward, run by the BLAS library behind NumPy. Over an epoch of $N$ images they cost

      $$\text{FLOPs} \approx 6\, N \sum_{\text{layers}} I \cdot O,$$

      about $2.3 \times 10^{11}$ for a 784-400-20 VAE on 60,000 images. They are the floor: no implementation can
      do them for less;
    - **elementwise passes** over (N, D) and (N, Z) arrays: activations, the Bernoulli loss and its gradient,
      the reparameterization and the KL. NumPy runs one pass per operation and allocates a temporary for each;
      the package fuses them into Numba loops that write into reused buffers;
    - **the optimizer**: Adam reads and writes four arrays the size of the model per step. It is memory-bound;
      one fused pass over one flat buffer is the best there is.

    This notebook measures each, in the two precisions: **float32** to train (half the memory traffic, twice
    the SIMD width) and **float64** for gradient checks (notebook 02). Every Numba kernel in
    `vae_numpy._kernels` has a plain-NumPy twin with the same signature; `_kernels.use_jit(False)` switches to
    the twins, so the speed-up is measured, not assumed. You will write the reference Adam step yourself.
    In fast mode the sizes are tiny and the timings mean little; run without `VAE_NUMPY_FAST` for real numbers.
    '''),
    imports("exercises", pyplot=False),
    code('''
        import cProfile
        import pstats
        import timeit

        from vae_numpy import _kernels

        data = tutorial.load_mnist(n_train=tutorial.pick(fast=1024, full=None), n_test=256)
        hidden = tutorial.pick(fast=(128,), full=(400,))
        print(data, "hidden layers:", hidden, "; Numba kernels:", _kernels.jit_enabled())
    '''),
    md(r'''
    ## float32 or float64?

    float32 carries about 7 significant digits, float64 about 16. For training, 7 digits are plenty: the noise
    of a minibatch gradient is far larger. Two models with the same weights give the same loss and gradients
    to about $10^{-6}$ relative:
    '''),
    code('''
        for dtype in (np.float32, np.float64):
            info = np.finfo(dtype)
            print(f"{info.dtype.name}: machine epsilon {info.eps:.1e}, {info.bits // 8} bytes per number")

        m32 = vn.VAE(hidden_dims=hidden, latent_dim=20, dtype="float32", seed=0)
        m64 = vn.VAE(hidden_dims=hidden, latent_dim=20, dtype="float64", seed=0)
        for name in m64.params:                         # the very same weights in both precisions
            m64.params[name][...] = m32.params[name]
        xb = data.x_train[:128]
        eps = np.random.default_rng(0).standard_normal((128, 20))
        l32, l64 = m32.forward(xb, eps=eps.astype(np.float32)), m64.forward(xb.astype(np.float64), eps=eps)
        m32.backward()
        m64.backward()
        grad_err = max(vn.gradcheck.array_rel_error(m32.grads[k], m64.grads[k]) for k in m64.grads)
        print(f"loss float32 {l32:.6f}, float64 {l64:.6f}: relative difference {abs(l32 - l64) / l64:.1e}")
        print(f"largest relative difference of a gradient array: {grad_err:.1e}")
        print(f"parameters: {m32.n_params:,}: {m32.n_params * 4 / 1e6:.1f} MB in float32, "
              f"{m64.n_params * 8 / 1e6:.1f} MB in float64")
        assert abs(l32 - l64) / l64 < 1e-5 and grad_err < 1e-3
    '''),
    md(r'''
    Gradient checks are another matter: a central difference in float32 cannot get below about $10^{-5}$
    relative error (notebook 02), so the checks refuse float32 models with a message that says what to do:
    '''),
    code('''
        try:
            vn.gradcheck.check_model(m32, xb[:4])
        except vn.ConfigError as exc:
            print("ConfigError:", exc)
    '''),
    md(r'''
    ## Numba kernels and their NumPy twins

    The Adam update, $m \leftarrow \beta_1 m + (1 - \beta_1) g$, $v \leftarrow \beta_2 v + (1 - \beta_2) g^2$,
    $p \leftarrow p - \text{lr}\ \hat{m} / (\sqrt{\hat{v}} + \varepsilon)$ with the bias corrections
    $\hat{m} = m / (1 - \beta_1^t)$, $\hat{v} = v / (1 - \beta_2^t)$, as NumPy runs it (seven passes over
    memory, and temporaries) and as one Numba loop (one pass). First write the reference version yourself;
    the package's two versions follow the exercise.
    '''),
    md(r'''
    ### Exercise 1 (graded): an Adam step

    Write the reference twin: `adam_step(p, g, m, v, t, lr, b1, b2, eps)` updates the parameters `p` and the
    moment estimates `m`, `v` **in place** (arrays of one shape), given the gradient `g` and the step number
    `t` (1 for the first step). The test runs it on a small least-squares problem whose gradient it takes by
    finite differences (`vn.gradcheck.numerical_gradient`), side by side with `vn.Adam`, then trains a small VAE
    with it. `vn.Adam` and the package's Adam kernels are switched off while the test runs your function.
    '''),
    solution("nb06-adam", '''
        def adam_step(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
            """One Adam update of p, m and v in place; t is the step number, starting at 1."""
            ### BEGIN SOLUTION
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            m_hat = m / (1 - b1 ** t)
            v_hat = v / (1 - b2 ** t)
            p -= lr * m_hat / (np.sqrt(v_hat) + eps)
            ### END SOLUTION
    '''),
    tests("nb06-adam-tests", 3, '''
        yours = exercises.graded(adam_step, "Adam", "SGD", "kernels.adam_update", "kernels.sgd_update")
        rng = np.random.default_rng(0)
        A, y = rng.standard_normal((8, 3)), rng.standard_normal(8)
        loss = lambda w: 0.5 * np.sum((A @ w - y) ** 2)
        w = rng.standard_normal(3)
        w_ref = w.copy()
        m, v = np.zeros(3), np.zeros(3)
        reference = vn.Adam({"w": w_ref}, lr=0.1)
        start = loss(w)
        for t in range(1, 101):
            g = vn.gradcheck.numerical_gradient(loss, w.copy())
            yours(w, g, m, v, t, lr=0.1)
            reference.step({"w": g})
            assert vn.gradcheck.array_rel_error(w, w_ref) < 1e-7, f"step {t}: your p differs from vn.Adam's"
        best = loss(np.linalg.lstsq(A, y, rcond=None)[0])            # the least-squares minimum
        print(f"loss {start:.4f} -> {loss(w):.4f} in 100 steps (minimum {best:.4f}); the same steps as vn.Adam")
        assert loss(w) - best < 1e-3 * (start - best)
        ### BEGIN HIDDEN TESTS
        assert vn.gradcheck.array_rel_error(m, reference.m["w"]) < 1e-7
        assert vn.gradcheck.array_rel_error(v, reference.v["w"]) < 1e-7
        p2 = rng.standard_normal((4, 5))
        g2 = rng.standard_normal((4, 5))
        m2, v2 = np.zeros_like(p2), np.zeros_like(p2)
        before = p2.copy()
        yours(p2, g2, m2, v2, 1, lr=0.01, b1=0.8, b2=0.99, eps=1e-6)
        # the first step moves every parameter by about lr against the sign of its gradient
        assert np.allclose(before - p2, 0.01 * g2 / (np.abs(g2) + 1e-6), rtol=1e-9, atol=0)
        # a VAE trained 20 steps with your Adam and with vn.Adam: the same parameters
        twins = [vn.VAE(input_dim=12, hidden_dims=(8,), latent_dim=3, dtype="float64", seed=0) for _ in range(2)]
        states = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in twins[0].params.items()}
        reference = vn.Adam(twins[1].params, lr=0.01)
        x_v, eps_v = rng.random((20, 12)), rng.standard_normal((20, 20, 3))
        for t in range(1, 21):
            for model in twins:
                model.forward(x_v, eps=eps_v[t - 1])
                model.backward()
            for k in twins[0].params:
                yours(twins[0].params[k], twins[0].grads[k], *states[k], t, lr=0.01)
            reference.step(twins[1].grads)
        for k in twins[0].params:
            assert vn.gradcheck.array_rel_error(twins[0].params[k], twins[1].params[k]) < 1e-9, k
        ### END HIDDEN TESTS
    '''),
    md(r'''
    The package's two versions: the NumPy twin (one operation per line, each a pass over memory with a
    temporary) and the Numba loop (one pass). The scalars arrive already cast to the arrays' dtype: a float64
    scalar in a float32 loop would make Numba compute in float64 and lose the SIMD speed-up.
    '''),
    code('''
        print(inspect.getsource(_kernels.adam_update_np))
        print(inspect.getsource(_kernels._adam_update_nb))
    '''),
    code('''
        P = tutorial.pick(fast=100_000, full=m32.n_params)
        rng = np.random.default_rng(0)
        p0, g = rng.standard_normal(P, dtype=np.float32), rng.standard_normal(P, dtype=np.float32)
        f = np.float32
        scalars = (f(1e-3), f(0.9), f(0.999), f(1 / (1 - 0.9)), f(1 / (1 - 0.999)), f(1e-8))
        results, seconds = {}, {}
        for name, kernels in (("numpy", _kernels.NUMPY), ("numba", _kernels.NUMBA)):
            p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
            kernels.adam_update(p, g, m, v, *scalars)            # the first call compiles the Numba kernel
            results[name] = p.copy()
            seconds[name] = min(timeit.repeat(lambda k=kernels, p=p, m=m, v=v: k.adam_update(p, g, m, v, *scalars),
                                              number=10, repeat=3)) / 10
        agree = vn.gradcheck.array_rel_error(results["numpy"], results["numba"])
        print(f"the twins agree to {agree:.1e} (float32)")
        for name, s in seconds.items():
            print(f"{name}: {s * 1e3:6.2f} ms per step over {P:,} parameters ({P * 16 / s / 1e9:.1f} GB/s)")
        assert agree < 1e-6
    '''),
    md(r'''
    ## Profiling an epoch

    `tutorial.time_epoch` runs one epoch as `vn.train` does and times each phase with `time.perf_counter`:
    gathering a batch and drawing $\epsilon$, the forward pass, the backward pass, the optimizer step. Each row
    below is a fresh model; a short warm-up first compiles the Numba kernels for the dtype. The last column is
    the floor: the same epoch's matrix products alone (`tutorial.matmul_floor`).

    Timings are only as good as the machine is quiet. Another program on a core slows some phases more than
    others (a two-thread matrix product waits for its slower thread), and can even reorder the rows. So each
    configuration is timed several times, interleaved with the others, and the fastest run is kept; the load
    average is printed beside the table: when it is above the number of cores, read the table with suspicion
    and run it again later. In full mode the epoch is 20,000 images, timed three times.
    '''),
    code('''
        print(inspect.getsource(tutorial.time_epoch))
    '''),
    code('''
        import os

        n_prof, repeats = tutorial.pick(fast=len(data.x_train), full=20_000), tutorial.pick(fast=2, full=3)
        configs = [(dtype, jit) for dtype in ("float32", "float64") for jit in (True, False)]
        best, floors = {}, {}
        for _ in range(repeats):                                # interleaved: a busy spell hits every row
            for dtype, jit in configs:
                x = data.x_train[:n_prof].astype(dtype)
                model = vn.VAE(hidden_dims=hidden, latent_dim=20, dtype=dtype, seed=0)
                with _kernels.use_jit(jit):
                    tutorial.time_epoch(model, x[:256])                    # warm-up (compiles the kernels)
                    result = tutorial.time_epoch(model, x)
                if (dtype, jit) not in best or result["total"] < best[dtype, jit]["total"]:
                    best[dtype, jit] = result
                floor = tutorial.matmul_floor(model, len(x))
                floors[dtype] = min(floors.get(dtype, np.inf), floor)
        rows = [(dtype, "numba" if jit else "numpy", best[dtype, jit], floors[dtype]) for dtype, jit in configs]
        phases = ("batch", "forward", "backward", "step", "total")
        print(f"{'dtype':<8}{'kernels':<8}" + "".join(f"{p:>10}" for p in phases) + f"{'matmuls':>10}")
        for dtype, kernels, r, floor in rows:
            print(f"{dtype:<8}{kernels:<8}" + "".join(f"{r[p]:10.3f}" for p in phases) + f"{floor:10.3f}")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"seconds per epoch of {n_prof:,} images, batches of 128, fastest of {repeats}; "
              f"load average {load:.1f} on {os.cpu_count()} cores")
    '''),
    code('''
        fig, ax = vn.plots.subplots(figsize=(7, 3))
        labels = [f"{d} {k}" for d, k, _, _ in rows]
        left = np.zeros(len(rows))
        for phase in phases[:-1]:
            widths = np.array([r[phase] for _, _, r, _ in rows])
            ax.barh(labels, widths, left=left, label=phase)
            left += widths
        ax.plot([fl for *_, fl in rows], labels, "k|", markersize=20, label="matmul floor")
        ax.set(xlabel="seconds per epoch", title="Where an epoch's time goes")
        ax.legend(loc="lower right", fontsize="small")
        fig
    '''),
    md(r'''
    What the table says, read by code rather than by eye (the sentences change with the numbers; nothing here
    assumes a particular machine). The matrix-product count is exact and checked: $6 N \sum I \cdot O$ FLOPs.
    '''),
    code('''
        by = {(d, k): r for d, k, r, _ in rows}
        f32 = by["float32", "numba"]
        top = max(phases[:-1], key=lambda p: f32[p])
        print(f"float32 with Numba: the largest phase is {top} ({f32[top] / f32['total']:.0%} of the epoch); "
              f"the epoch takes {f32['total'] / floors['float32']:.1f} x its matrix products alone")
        gains = {p: by["float32", "numpy"][p] / max(f32[p], 1e-9) for p in ("forward", "backward", "step")}
        print("Numba vs NumPy twins, float32, per phase:", {p: f"{g:.1f}x" for p, g in gains.items()})
        print(f"float64 vs float32 (Numba): epoch {by['float64', 'numba']['total'] / f32['total']:.1f}x, "
              f"matrix products {floors['float64'] / floors['float32']:.1f}x")
        sizes = [p.shape for k, p in vn.VAE(hidden_dims=(400,), latent_dim=20).params.items() if k.endswith(".W")]
        flops = 6 * 60_000 * sum(i * o for i, o in sizes)
        print(f"matrix-product FLOPs of a 784-400-20 epoch on 60,000 images: {flops:.2e}")
        assert abs(flops - 2.34e11) < 0.01e11                     # the number the introduction quotes
    '''),
    md(r'''
    A profiler tells the same story function by function. `cProfile` adds overhead to every Python call, so
    its absolute times are inflated; the ranking is what it is for.
    '''),
    code('''
        model = vn.VAE(hidden_dims=hidden, latent_dim=20, seed=0)
        tutorial.time_epoch(model, data.x_train[:256])                     # warm-up
        profiler = cProfile.Profile()
        profiler.enable()
        tutorial.time_epoch(model, data.x_train[:n_prof])
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(8);
    '''),
    md(r'''
    ## Exercises

    ### Exercise 2 (graded by hand): reading the profile

    Run the notebook without `VAE_NUMPY_FAST`, on a machine as quiet as you can find (note the load average
    printed with the table). From **your** table: in float32 with the Numba kernels, which phase dominates an
    epoch, and how far is the total from the matrix-product floor? Which phase gains most from the Numba
    kernels, and why? Why does float64 cost more even in the matrix products? If your numbers disagree with
    what you expected, say what in the machine's state could explain it.
    '''),
    answer("nb06-profile", 2, r'''
    A good answer quotes the run's own numbers (the cell after the table prints them) and explains them; these
    are the explanations. The forward and backward passes hold the matrix products, $6N\sum I\cdot O$ FLOPs,
    which no implementation avoids; on a quiet machine they are most of the float32 epoch, and the total sits
    within a small factor of the floor. The elementwise work is where the kernels gain: NumPy makes one pass
    over memory per operation, with a temporary each (seven for Adam, several for the Bernoulli gradient and for
    the reparameterization/KL backward), while each Numba kernel makes one pass, so the optimizer step and the
    backward pass gain most. float64 moves twice the bytes for every array and fits half as many numbers in a
    SIMD register, so both the memory-bound passes and BLAS's compute-bound products take about twice as long.
    On a busy machine (load average above the core count) these relations can break: a multi-threaded matrix
    product waits for its slowest thread, so the floor, timed separately, can exceed an epoch, and the NumPy
    rows can beat the Numba ones; the fix is to rerun when the machine is quiet or to use one thread
    (`threadpoolctl`), not to conclude that the kernels are slower.
    '''),
    md(r'''
    ### Exercise 3 (not graded)

    Time epochs with `batch_size` 32, 128 and 512. Why do the small batches cost more per image? (Count the
    Python calls per batch and look at the sizes of the matrix products.)
    '''),
]
