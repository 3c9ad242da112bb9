"""Per-arm ridge regression on a feature map of the scaled context, with a bounded buffer.

Updates are rank-one (O(P^2) per result, P features; inverses kept by Sherman-Morrison);
when the learnt context range changes the features change, so the model refits from its
buffer (at most ``buffer`` rows: bounded).
Used by ``chebcb``, ``squarecb``, ``linucb`` and ``lin-ts``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from app.policies.features import RangeScaler, chebyshev
from app.policies.window import Window, Windowed

FeatureMap = Callable[[np.ndarray], np.ndarray]


#: K x P x P doubles a per-arm model may hold (128 MiB)
MAX_ENTRIES = 16 * 1024 * 1024


def feature_map(name: str, degree: int) -> FeatureMap:
    if not 0 <= int(degree) <= 32:
        raise ValueError(f"policy_config.degree={degree} must be in 0..32")
    if name in ("chebyshev", "poly"):
        return lambda z: chebyshev(z, degree)
    if name == "linear":
        return lambda z: np.concatenate([np.ones(z.shape[:-1] + (1,)), z], axis=-1)
    raise ValueError(f"policy_config.features={name!r}: allowed chebyshev, linear")


def model_input(context: np.ndarray) -> np.ndarray:
    """The ridge models' input: the context, or one constant feature when it has none."""
    return context if context.size else np.zeros(1)


class PerArmRidge(Windowed):
    """Not thread-safe. State: scaler range, buffer, per-arm (A, b). Targets as given.

    Each arm's inverse ``A^-1`` and coefficients are kept current by Sherman-Morrison, so a
    prediction is two small products per arm (no solve), and the buffer is a sliding window
    over spare capacity (no copy of it per result)."""

    def __init__(
        self, n_arms: int, n_features: int, fmap: FeatureMap, lam: float = 1.0, buffer: int = 20_000
    ) -> None:
        self.K = n_arms
        self.fmap = fmap
        self.lam = lam
        self.d = n_features
        self.scaler = RangeScaler(n_features)
        self.P = int(fmap(np.zeros((1, n_features))).shape[-1])
        if n_arms * self.P * self.P > MAX_ENTRIES:
            # K P x P matrices: bounded before anything is allocated
            raise ValueError(
                f"policy_config: {n_arms} arms x {self.P}^2 features (degree too high) is "
                f"over {MAX_ENTRIES} model entries"
            )
        if not 1 <= int(buffer) <= 1_000_000:
            raise ValueError(f"policy_config.buffer={buffer} must be in 1..1000000")
        self.A = np.tile(np.eye(self.P) * lam, (n_arms, 1, 1))
        self.b = np.zeros((n_arms, self.P))
        self.n = np.zeros(n_arms)
        self._window = Window(n_features + 2, buffer)  # rows: x..., arm, y
        self._derive()

    # -------------------------------------------------------------- buffer (sliding window)
    @property
    def buf_x(self) -> np.ndarray:
        return self._window.rows[:, : self.d]

    @buf_x.setter
    def buf_x(self, v: np.ndarray) -> None:
        self._load_buffer(x=np.asarray(v, float).reshape(-1, self.d))

    @property
    def buf_a(self) -> np.ndarray:
        return self._window.rows[:, self.d].astype(np.int64)

    @buf_a.setter
    def buf_a(self, v: np.ndarray) -> None:
        self._load_buffer(a=np.asarray(v, float).reshape(-1))

    @property
    def buf_y(self) -> np.ndarray:
        return self._window.rows[:, self.d + 1]

    @buf_y.setter
    def buf_y(self, v: np.ndarray) -> None:
        self._load_buffer(y=np.asarray(v, float).reshape(-1))

    def _load_buffer(self, **cols: np.ndarray) -> None:
        """Set one column of the window (set_state sets x, then a, then y)."""
        n = len(next(iter(cols.values())))
        if len(self._window) != n:
            self._window.load(np.zeros((n, self.d + 2)))
        window = self._window.rows
        if "x" in cols:
            window[:, : self.d] = cols["x"]
        if "a" in cols:
            window[:, self.d] = cols["a"]
        if "y" in cols:
            window[:, self.d + 1] = cols["y"]

    # -------------------------------------------------------------- model
    def _derive(self) -> None:
        """Inverses and coefficients from (A, b)."""
        self.Ainv = np.linalg.inv(self.A)
        self.theta = np.einsum("kpq,kq->kp", self.Ainv, self.b)

    def phi(self, x: np.ndarray) -> np.ndarray:
        return self.fmap(self.scaler.scale(x)[None, :])[0]

    def add(self, x: np.ndarray, arm: int, y: float) -> None:
        changed = self.scaler.observe(x)
        self._window.append(np.concatenate([x, [arm, y]]))
        if changed:
            self.refit()
            return
        f = self.phi(x)
        self.A[arm] += np.outer(f, f)
        self.b[arm] += f * y
        self.n[arm] += 1
        Af = self.Ainv[arm] @ f
        self.Ainv[arm] -= np.outer(Af, Af) / (1.0 + f @ Af)
        self.theta[arm] = self.Ainv[arm] @ self.b[arm]

    def refit(self) -> None:
        xs, arms, ys = self.buf_x, self.buf_a, self.buf_y
        F = self.fmap(self.scaler.scale(xs)) if len(xs) else np.zeros((0, self.P))
        self.A = np.tile(np.eye(self.P) * self.lam, (self.K, 1, 1))
        self.b = np.zeros((self.K, self.P))
        self.n = np.zeros(self.K)
        for a in range(self.K):
            m = arms == a
            Fa = F[m]
            self.A[a] += Fa.T @ Fa
            self.b[a] += Fa.T @ ys[m]
            self.n[a] = m.sum()
        self._derive()

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean per arm, ||phi||_{A^-1} per arm, phi)."""
        f = self.phi(x)
        mean = self.theta @ f
        width = np.sqrt(np.maximum(np.einsum("kpq,p,q->k", self.Ainv, f, f), 0.0))
        return mean, width, f

    state_fields = ("A", "b", "n", "buf_x", "buf_a", "buf_y")

    def get_state(self) -> dict[str, object]:
        # Ainv and theta too: a restored model then predicts bit for bit what the live one
        # (updated by Sherman-Morrison, not inverted afresh) does
        return {
            "lo": self.scaler.lo,
            "hi": self.scaler.hi,
            **{k: getattr(self, k) for k in self.state_fields},
            "Ainv": self.Ainv,
            "theta": self.theta,
        }

    def set_state(self, s: dict[str, object]) -> None:
        self.scaler.lo = np.asarray(s["lo"], float)
        self.scaler.hi = np.asarray(s["hi"], float)
        for k in self.state_fields:
            setattr(self, k, np.asarray(s[k]))
        if "Ainv" in s and "theta" in s:
            self.Ainv = np.asarray(s["Ainv"], float)
            self.theta = np.asarray(s["theta"], float)
        else:  # a snapshot from before the inverses were kept
            self._derive()
