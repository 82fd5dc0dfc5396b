"""The VAE and, beside it, a plain autoencoder with the same surface.

Shapes: x: (N, D) in [0, 1]; mu, log_var, eps, h: (N, Z); N batch, D pixels, Z latent.

VAE (Kingma & Welling, 2014):
    encoder   q(h | x) = N(mu(x), diag sigma^2(x)),   [mu, log sigma^2] = MLP(x)
    sample    h = mu + sigma * eps,  eps ~ N(0, I)                          (sampling.py)
    decoder   p(x | h) = Bernoulli(sigmoid(a(h)))  or  N(m(h), s^2)         (losses.py)
    loss      L = mean_n [ -log p(x_n | h_n) + beta * KL(q(h | x_n) || N(0, I)) ]   (negative ELBO, nats)
    or, with objective="iwae" and k draws h_j per example, L_k = mean_n -log (1/k) sum_j w_j    (iwae.py)

Autoencoder: the same MLPs with a deterministic code z = MLP(x) and L = mean_n [ -log p(x_n | z_n) ].

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014. Y. Burda, R. Grosse,
R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016. I. Higgins et al., "beta-VAE", ICLR 2017.
"""

from __future__ import annotations

import numpy as np

from . import _kernels, iwae, losses
from ._network import DEFAULT_HIDDEN, Network
from ._validate import available_memory, byte_size, check_choice, check_float, check_int, check_matrix, check_rng
from .errors import ConfigError
from .nn import Dense


class VAE(Network):
    """A variational autoencoder: any encoder and decoder, with the heads, sampling, KL, likelihood and beta.

    Parameters
    ----------
    input_dim : D, pixels per example (784 for MNIST).
    hidden_dims : for arch="mlp" (the default), the hidden widths of the encoder (default (400,)); the decoder
        mirrors them, e.g. (400,) or (512, 256).
    latent_dim : Z, the size of the code h.
    likelihood : "bernoulli" (x in [0, 1], decoder emits logits) or "gaussian".
    beta : weight of the KL term (beta-VAE; 1 is the ELBO, 0 drops the KL).
    activation : hidden activation, one of relu, leaky_relu, tanh, sigmoid, softplus.
    dtype : "float32" to train, "float64" for gradient checks.
    seed : seeds the initial weights and the model's own generator (used when eps is not passed).
    decoder_sigma : for a Gaussian decoder, the fixed std (default 1.0) or "learned" (a per-pixel
        log-variance head, the seed lecture's p(x|h) = N(mu_g(h), diag sigma_g(h))).
    init : "he-xavier" (default: He normal before ReLU, Xavier normal before linear outputs, zero biases) or
        "torch" (PyTorch's nn.Linear default, W and b ~ U(+-1/sqrt(fan_in))); see layers.init_weights.
    objective : "elbo" (default) or "iwae", the training objective with k samples per example (iwae.py):
        "iwae" is the importance-weighted bound L_k = -log (1/k) sum_j w_j (k = 1: the ELBO with the KL estimated
        from the sample); "elbo" with k > 1 averages the reconstruction over k draws and keeps the closed-form KL.
    k : samples per example, an integer >= 1 (default 1). With objective "iwae" or k > 1, eps is (N, k, Z).
    arch : "mlp", "conv" or "rnn" (vae_numpy/architectures.py), with their options as keywords (channels=
        for conv; state_size=, cell= for rnn); or encoder= and decoder= layer stacks (vae_numpy.nn) and an
        optional output= head (default Dense(D)). See vae_numpy/_network.py.
    """

    kind = "vae"

    def __init__(self, input_dim=784, hidden_dims=DEFAULT_HIDDEN, latent_dim=20, likelihood="bernoulli", beta=1.0,
                 activation="relu", dtype="float32", seed=0, decoder_sigma=1.0, init="he-xavier", objective="elbo",
                 k=1, arch=None, encoder=None, decoder=None, output=None, arch_options=None, **options):
        super().__init__(input_dim, hidden_dims, latent_dim, likelihood, activation, dtype, seed, decoder_sigma,
                         init, arch, encoder, decoder, output, arch_options, **options)
        self.beta = beta
        self.objective, self.k = objective, k
        self.kl_weight = 1.0   # a multiplier on beta that training anneals (KL warm-up); 1 otherwise
        # the VAE owns its heads: q(h | x) = N(mu, diag exp(log_var)) read from the encoder's features
        self._build([("enc_mu", Dense(self.latent_dim)), ("enc_log_var", Dense(self.latent_dim))])
        self.last = {}

    @property
    def beta(self):
        return self._beta

    @beta.setter
    def beta(self, value):
        self._beta = check_float("beta", value, minimum=0.0)

    @property
    def objective(self):
        return self._objective

    @objective.setter
    def objective(self, value):
        self._objective = check_choice("objective", value, iwae.OBJECTIVES)

    @property
    def k(self):
        return self._k

    @k.setter
    def k(self, value):
        self._k = check_int("k", value)

    @property
    def k_samples(self):
        """True when the objective draws (N, k, Z) noise: objective "iwae", or k > 1."""
        return self.objective == "iwae" or self.k > 1

    def eps_shape(self, n):
        """The shape of the noise of one forward pass over n examples: (n, Z), or (n, k, Z) (see k_samples)."""
        return (n, self.k, self.latent_dim) if self.k_samples else (n, self.latent_dim)

    def config(self):
        return {**super().config(), "beta": self.beta, "objective": self.objective, "k": self.k}

    # ------------------------------------------------------------------------------------ public
    def encode(self, x):
        """x: (N, D) -> (mu, log_var), each (N, Z): the parameters of q(h | x)."""
        x = self._check_x(x)
        h, _ = self._encoder_forward(x)
        mu, _ = self._dense("enc_mu", h)
        log_var, _ = self._dense("enc_log_var", h)
        return mu, log_var

    def forward(self, x, eps=None):
        """Mean negative ELBO of the batch, in nats; keeps what backward() needs.

        x: (N, D); eps: (N, Z) standard-normal noise (drawn from the model's generator when None; a
        given eps is copied, so backward() uses this draw). x is kept by reference until backward():
        do not write into it in between. Also sets self.last = {"loss", "reconstruction", "kl"} (batch means).
        With objective "iwae" or k > 1 (see :meth:`_forward_k`) eps is (N, k, Z) ((N, Z) is accepted for k = 1).
        """
        x = self._check_x(x)
        if self.k_samples:
            self.check_k_memory(x.shape[0])
            return self._forward_k(x, self._check_eps_k(x, eps))
        if eps is None:
            eps = self.rng.standard_normal((x.shape[0], self.latent_dim)).astype(self.dtype)
        else:
            eps = check_matrix("eps", eps, ncols=self.latent_dim, dtype=self.dtype)
            if eps.shape[0] != x.shape[0]:
                raise ConfigError(f"eps has shape {eps.shape}; expected ({x.shape[0]}, {self.latent_dim}) "
                                  "to match x")
            # backward() must see the very draw of this forward pass, even if the caller reuses its array
            kept = self._buf("eps_copy", eps.shape)
            np.copyto(kept, eps)
            eps = kept
        return self._forward(x, eps)

    # ------------------------------------------------------------------------------ fast path
    def _forward(self, x, eps, need_grad=True):
        """forward() without input checks (the training loop checks the data set once).

        eps: (N, Z) gives the single-sample negative ELBO whatever the objective (what evaluation reports);
        eps: (N, k, Z) gives the model's k-sample objective (:meth:`_forward_k`).
        """
        if eps.ndim == 3:
            return self._forward_k(x, eps, need_grad)
        N, Z = x.shape[0], self.latent_dim
        h, enc_caches = self._encoder_forward(x, ws=True)
        mu, mu_cache = self._dense("enc_mu", h, ws=True)
        log_var, lv_cache = self._dense("enc_log_var", h, ws=True)
        z, std, kl = self._buf("z", (N, Z)), self._buf("std", (N, Z)), self._buf("kl", (N,))
        _kernels.K.reparam_kl_forward(mu, log_var, eps, z, std, kl)       # z = mu + std * eps
        out, log_var_x, dec_caches = self._decoder_forward(z, ws=True)
        rec, dout, dlog_var_x = self._reconstruction(x, out, log_var_x, need_grad)
        beta = self.beta * self.kl_weight
        rec_mean, kl_mean = float(np.add.reduce(rec)) / N, float(np.add.reduce(kl)) / N
        loss = rec_mean + beta * kl_mean
        self.last = {"loss": loss, "reconstruction": rec_mean, "kl": kl_mean}
        self._cache = (enc_caches, mu_cache, lv_cache, mu, std, eps, dec_caches, dout, dlog_var_x, beta)
        return loss

    def _reconstruction(self, x, out, log_var_x, need_grad):
        """-log p(x | h) per example (N,), and its gradients w.r.t. out and log_var_x divided by N."""
        N = x.shape[0]
        if self.likelihood == "bernoulli":
            shape = out.shape
            rec, dout = self._buf("rec", (N,)), self._buf("dout", shape)
            e, l = self._buf("bce_e", shape), self._buf("bce_l", shape)
            _kernels.K.bce_logits(out, x, self.dtype.type(1.0 / N), rec, dout, e, l)
            return rec, dout, None
        sigma = 1.0 if self.decoder_sigma == "learned" else self.decoder_sigma
        rec = losses.gaussian_nll(x, out, log_var_x, sigma)
        if not need_grad:
            return rec, None, None
        ones = np.full(N, 1.0 / N, dtype=self.dtype)
        dout, dlog_var_x = losses.gaussian_nll_backward(ones, x, out, log_var_x, sigma)
        return rec, dout, dlog_var_x

    def _backward(self):
        if isinstance(self._cache, dict):
            return self._backward_k()
        enc_caches, mu_cache, lv_cache, mu, std, eps, dec_caches, dout, dlog_var_x, beta = self._cache
        N = mu.shape[0]
        dz = self._decoder_backward(dout, dlog_var_x, dec_caches)
        dmu, dlog_var = self._buf("dmu", mu.shape), self._buf("dlog_var", mu.shape)
        # mu feeds both h and the KL, and so does log_var: each gets the sum of the two paths
        _kernels.K.reparam_kl_backward(dz, mu, std, eps, self.dtype.type(beta / N), dmu, dlog_var)
        dh = self._dense_backward(dmu, mu_cache)
        dh += self._dense_backward(dlog_var, lv_cache)   # h feeds both heads: the gradients add
        self._encoder_backward(dh, enc_caches)

    # ------------------------------------------------------------------- k samples per example
    def k_step_bytes(self, n):
        """A lower bound on the memory of one k-sample step over n examples (the decoder runs on n k rows).

        Shapes: x: (n, D); the decoder sees (n k, Z). Per decoded row: the noise, code and its gradient (Z each,
        and the float64 draw), what the decoder stack keeps for its forward and backward passes (each layer's
        outputs and caches, and their gradients: Layer.row_elements), and ~5 arrays of D (the repeated x,
        logits, loss terms, their gradients). Real peaks (tracemalloc) measured 1.0-1.1x this bound for the
        MLP, 1.1x for the rnn and 1.4-2.3x for the conv arch.
        """
        features = self._decoder_row_elements(backward=True)
        row = self.dtype.itemsize * (4 * self.latent_dim + features + 5 * self.input_dim) + 8 * self.latent_dim
        return n * self.k * row

    def check_k_memory(self, n):
        """Refuse, before allocating, a k-sample step over n examples that cannot fit in the free memory.

        objective="iwae" or k > 1 decodes n * k codes at once: k = 10,000 on a batch of 128 would need tens of
        GB, and an allocation that large either fails late or pushes the machine into swap. Raises ConfigError
        naming k, the batch and the fix; checked once per (k, batch size): a larger batch or another k is
        checked again. Shapes: n is the batch's number of rows, x: (n, D).
        """
        ok_k, ok_n = getattr(self, "_k_memory_ok", (None, 0))
        if not self.k_samples or (ok_k == self.k and n <= ok_n):
            return
        need, have = self.k_step_bytes(n), available_memory()
        if have is not None and need > have:
            per_code = max(need // (n * self.k), 1)          # bytes per decoded row
            fit_k = have // (n * per_code)
            hint = (f"e.g. k <= {fit_k:,} at this batch" if fit_k >= 1 else
                    f"even k=1 needs a batch of at most {max(1, have // per_code):,}")
            raise ConfigError(f"k={self.k} on a batch of {n:,} decodes {n * self.k:,} codes at once and needs at "
                              f"least {byte_size(need)}; {byte_size(have)} are free: lower k or the batch size "
                              f"({hint})")
        self._k_memory_ok = (self.k, n)

    def _check_eps_k(self, x, eps):
        """eps for the k-sample path: drawn from the model's generator when None, else checked and copied."""
        N, K, Z = x.shape[0], self.k, self.latent_dim
        if eps is None:
            return self.rng.standard_normal((N, K, Z)).astype(self.dtype)
        arr = np.asarray(eps)
        if K == 1 and arr.ndim == 2:
            arr = arr[:, None, :]
        if arr.shape != (N, K, Z):
            one = f" or ({N}, {Z})" if K == 1 else ""
            raise ConfigError(f"eps has shape {np.shape(eps)}; expected ({N}, {K}, {Z}){one}: one draw per example "
                              f"and sample (objective={self.objective!r}, k={K})")
        kept = self._buf("k.eps", arr.shape)   # backward() must see this very draw (see forward)
        np.copyto(kept, check_matrix("eps", arr.reshape(N * K, Z), dtype=self.dtype).reshape(arr.shape))
        return kept

    def _forward_k(self, x, eps, need_grad=True):
        """The k-sample objectives (iwae.py): x: (N, D), eps: (N, K, Z) -> the batch mean, in nats.

        objective "iwae": mean_n L_k(x_n); self.last["kl"] is the mean KL estimate log q(h|x) - log p(h).
        objective "elbo": mean_n [ (1/K) sum_j rec_nj + beta * KL_n ] with the closed-form KL.
        self.last["reconstruction"] is the mean of -log p(x | h_j) over examples and samples. The decoder
        runs once on all N * K codes.
        """
        (N, K, Z), D = eps.shape, x.shape[1]
        g, enc_caches = self._encoder_forward(x, ws=True)
        mu, mu_cache = self._dense("enc_mu", g, ws=True)
        log_var, lv_cache = self._dense("enc_log_var", g, ws=True)
        std = np.exp(np.multiply(log_var, 0.5, out=self._buf("k.std", (N, Z))), out=self._buf("k.std", (N, Z)))
        h = iwae.reparameterize(mu, std, eps, out=self._buf("k.h", (N, K, Z)))
        out, log_var_x, dec_caches = self._decoder_forward(h.reshape(N * K, Z), ws=True)
        xr = self._buf("k.x", (N * K, D))
        np.copyto(xr.reshape(N, K, D), x[:, None, :])
        # rec: (N K,); dout, dlog_var_x: the gradients of the mean over all N K rows, reweighted below
        rec, dout, dlog_var_x = self._reconstruction(xr, out, log_var_x, need_grad)
        rec = rec.reshape(N, K)
        beta = self.beta * self.kl_weight
        if self.objective == "iwae":
            kl = iwae.kl_estimate(h, eps, log_var)
            bound, w = iwae.iwae_bound(rec, kl, beta)
            loss, c = float(bound.mean()), (w / N).astype(self.dtype)
            if need_grad:   # row (n, j) of the mean over N K rows had weight 1 / (N K); it needs w~_nj / N
                rows = (w * K).astype(self.dtype).reshape(N * K, 1)
                dout *= rows
                if dlog_var_x is not None:
                    dlog_var_x *= rows
        else:
            kl = losses.gaussian_kl(mu, log_var)
            loss, c = float(rec.mean(dtype=np.float64) + beta * kl.mean(dtype=np.float64)), None
        rec_mean, kl_mean = float(rec.mean(dtype=np.float64)), float(kl.mean(dtype=np.float64))
        self.last = {"loss": loss, "reconstruction": rec_mean, "kl": kl_mean}
        self._cache = {"enc": enc_caches, "mu": mu_cache, "lv": lv_cache, "mu_value": mu, "std": std, "h": h,
                       "eps": eps, "dec": dec_caches, "dout": dout, "dlog_var_x": dlog_var_x, "c": c, "beta": beta}
        return loss

    def _backward_k(self):
        cache = self._cache
        h, eps, std, beta = cache["h"], cache["eps"], cache["std"], cache["beta"]
        N, K, Z = h.shape
        dh = self._decoder_backward(cache["dout"], cache["dlog_var_x"], cache["dec"]).reshape(N, K, Z)
        if cache["c"] is not None:
            dmu, dlog_var = iwae.iwae_latent_backward(dh, h, eps, std, cache["c"], self.dtype.type(beta))
        else:
            dmu, dlog_var = iwae.elbo_k_latent_backward(dh, cache["mu_value"], eps, std, self.dtype.type(beta / N))
        dg = self._dense_backward(dmu, cache["mu"])
        dg += self._dense_backward(dlog_var, cache["lv"])   # g feeds both heads: the gradients add
        self._encoder_backward(dg, cache["enc"])

    # ---------------------------------------------------------------------------- evaluation
    def log_likelihood(self, x, n_samples=1000, seed=0, rng=None, max_rows=4096):
        """Importance-sampled log p(x) (IWAE bound with K = n_samples), per example: (N,) float64.

        log p(x) ~= log (1/K) sum_k p(x | h_k) p(h_k) / q(h_k | x),  h_k ~ q(h | x)   (iwae.py, beta = 1)

        The noise, the codes and the decoder run in the model's dtype, `max_rows` decoded samples at a time in
        workspaces reused from chunk to chunk (and kept apart from training's, so that a forward/backward pair
        may enclose this call); each log-weight goes to float64 for the log-sum-exp over the K samples.
        The bound tightens as K grows.
        """
        x = self._check_x(x)
        K = check_int("n_samples", n_samples)
        max_rows = check_int("max_rows", max_rows)
        rng = check_rng(seed, rng)
        N, Z = x.shape[0], self.latent_dim
        per_img = max(1, max_rows // K)          # images per pass
        k_chunk = min(K, max(1, max_rows // per_img))
        k_chunk = -(-K // -(-K // k_chunk))      # chunks of equal size (5000 -> 2 x 2500): the workspaces stay
        result = np.empty(N, dtype=np.float64)
        training_ws, self._ws = self._ws, self.__dict__.setdefault("_eval_ws", {})
        try:
            for start in range(0, N, per_img):
                xb = x[start:start + per_img]
                B = xb.shape[0]
                mu, log_var = self.encode(xb)
                std = np.exp(0.5 * log_var)
                log_w = np.empty((B, K), dtype=np.float64)
                for k0 in range(0, K, k_chunk):
                    kc = min(k_chunk, K - k0)
                    eps = rng.standard_normal(dtype=self.dtype, out=self._buf("ll.eps", (B, kc, Z)))
                    h = iwae.reparameterize(mu, std, eps, out=self._buf("ll.h", (B, kc, Z)))
                    np.subtract(self._log_px_given_h(xb, h), iwae.kl_estimate(h, eps, log_var),
                                out=log_w[:, k0:k0 + kc], dtype=np.float64)
                result[start:start + B] = iwae.log_mean_exp(log_w)
        finally:
            self._ws = training_ws
        return result

    def _log_px_given_h(self, x, h):
        """x: (B, D), h: (B, K, Z) -> log p(x_b | h_bk): (B, K) in the model's dtype."""
        B, K, Z = h.shape
        out, log_var_x, _ = self._decoder_forward(h.reshape(B * K, Z), ws=True)
        out = out.reshape(B, K, -1)
        if self.likelihood == "bernoulli":
            res = self._buf("ll.res", (B, K))
            e, l = self._buf("ll.e", out.shape), self._buf("ll.l", out.shape)
            return _kernels.K.bernoulli_loglik_rows(out, x, res, e, l)
        sigma = 1.0 if self.decoder_sigma == "learned" else self.decoder_sigma
        xr = np.broadcast_to(x[:, None, :], out.shape).reshape(B * K, -1)
        nll = losses.gaussian_nll(xr, out.reshape(B * K, -1), log_var_x, sigma)
        return -nll.reshape(B, K)


class Autoencoder(Network):
    """A deterministic autoencoder: z = MLP(x), L = mean_n -log p(x_n | z_n). Same surface as VAE.

    ``encode(x)`` returns the code z: (N, Z); ``sample(n)`` decodes N(0, I) codes, which an autoencoder
    was never trained to decode (the lecture's point: compare with a VAE's samples).
    """

    kind = "ae"

    def __init__(self, input_dim=784, hidden_dims=DEFAULT_HIDDEN, latent_dim=20, likelihood="bernoulli",
                 activation="relu", dtype="float32", seed=0, decoder_sigma=1.0, init="he-xavier", arch=None,
                 encoder=None, decoder=None, output=None, arch_options=None, **options):
        super().__init__(input_dim, hidden_dims, latent_dim, likelihood, activation, dtype, seed, decoder_sigma,
                         init, arch, encoder, decoder, output, arch_options, **options)
        self._build([("enc_z", Dense(self.latent_dim))])
        self.beta = 0.0
        self.kl_weight = 1.0
        self.last = {}

    def encode(self, x):
        """x: (N, D) -> z: (N, Z), the deterministic code."""
        x = self._check_x(x)
        h, _ = self._encoder_forward(x)
        z, _ = self._dense("enc_z", h)
        return z

    def forward(self, x, eps=None):
        """Mean reconstruction loss -log p(x | z) in nats. x: (N, D); eps is ignored (no noise)."""
        return self._forward(self._check_x(x), None)

    _reconstruction = VAE._reconstruction

    def _forward(self, x, eps=None, need_grad=True):
        h, enc_caches = self._encoder_forward(x, ws=True)
        z, z_cache = self._dense("enc_z", h, ws=True)
        out, log_var_x, dec_caches = self._decoder_forward(z, ws=True)
        rec, dout, dlog_var_x = self._reconstruction(x, out, log_var_x, need_grad)
        loss = float(rec.mean())
        self.last = {"loss": loss, "reconstruction": loss, "kl": 0.0}
        self._cache = (enc_caches, z_cache, dec_caches, dout, dlog_var_x)
        return loss

    def _backward(self):
        enc_caches, z_cache, dec_caches, dout, dlog_var_x = self._cache
        dz = self._decoder_backward(dout, dlog_var_x, dec_caches)
        dh = self._dense_backward(dz, z_cache)
        self._encoder_backward(dh, enc_caches)

    def log_likelihood(self, x, n_samples=1000, seed=0, rng=None, max_rows=8192):
        raise ConfigError("an Autoencoder defines no density p(x), so it has no log-likelihood; "
                          "train a VAE (vn.VAE) to evaluate log p(x)")
