"""Per-arm ridge regression on a feature map of the scaled context, with a bounded buffer.

Updates are rank-one (O(P^2) per result, P features); when the learnt context range changes
the features change, so the model refits from its buffer (at most ``buffer`` rows: bounded).
Used by ``chebcb``, ``squarecb``, ``linucb`` and ``lin-ts``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from app.policies.features import RangeScaler, chebyshev

FeatureMap = Callable[[np.ndarray], np.ndarray]


def feature_map(name: str, degree: int) -> FeatureMap:
    if name in ("chebyshev", "poly"):
        return lambda z: chebyshev(z, degree)
    if name == "linear":
        return lambda z: np.concatenate([np.ones(z.shape[:-1] + (1,)), z], axis=-1)
    raise ValueError(f"policy_config.features={name!r}: allowed chebyshev, linear")


def model_input(context: np.ndarray) -> np.ndarray:
    """The ridge models' input: the context, or one constant feature when it has none."""
    return context if context.size else np.zeros(1)


class PerArmRidge:
    """Not thread-safe. State: scaler range, buffer, per-arm (A, b). Targets as given."""

    def __init__(
        self, n_arms: int, n_features: int, fmap: FeatureMap, lam: float = 1.0, buffer: int = 20_000
    ) -> None:
        self.K = n_arms
        self.fmap = fmap
        self.lam = lam
        self.buffer_size = buffer
        self.scaler = RangeScaler(n_features)
        self.P = int(fmap(np.zeros((1, n_features))).shape[-1])
        self.A = np.tile(np.eye(self.P) * lam, (n_arms, 1, 1))
        self.b = np.zeros((n_arms, self.P))
        self.n = np.zeros(n_arms)
        self.buf_x = np.zeros((0, n_features))
        self.buf_a = np.zeros(0, dtype=np.int64)
        self.buf_y = np.zeros(0)

    def phi(self, x: np.ndarray) -> np.ndarray:
        return self.fmap(self.scaler.scale(x)[None, :])[0]

    def add(self, x: np.ndarray, arm: int, y: float) -> None:
        changed = self.scaler.observe(x)
        self.buf_x = np.vstack([self.buf_x, x[None, :]])[-self.buffer_size :]
        self.buf_a = np.append(self.buf_a, arm)[-self.buffer_size :]
        self.buf_y = np.append(self.buf_y, y)[-self.buffer_size :]
        if changed:
            self.refit()
            return
        f = self.phi(x)
        self.A[arm] += np.outer(f, f)
        self.b[arm] += f * y
        self.n[arm] += 1

    def refit(self) -> None:
        F = (
            self.fmap(np.stack([self.scaler.scale(x) for x in self.buf_x]))
            if len(self.buf_x)
            else np.zeros((0, self.P))
        )
        self.A = np.tile(np.eye(self.P) * self.lam, (self.K, 1, 1))
        self.b = np.zeros((self.K, self.P))
        self.n = np.zeros(self.K)
        for a in range(self.K):
            m = self.buf_a == a
            Fa = F[m]
            self.A[a] += Fa.T @ Fa
            self.b[a] += Fa.T @ self.buf_y[m]
            self.n[a] = m.sum()

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean per arm, ||phi||_{A^-1} per arm, phi)."""
        f = self.phi(x)
        theta = np.linalg.solve(self.A, self.b[..., None])[..., 0]
        mean = theta @ f
        Ainv_f = np.linalg.solve(self.A, np.broadcast_to(f, (self.K, self.P))[..., None])[..., 0]
        width = np.sqrt(np.maximum(Ainv_f @ f, 0.0))
        return mean, width, f

    state_fields = ("A", "b", "n", "buf_x", "buf_a", "buf_y")

    def get_state(self) -> dict[str, object]:
        return {
            "lo": self.scaler.lo,
            "hi": self.scaler.hi,
            **{k: getattr(self, k) for k in self.state_fields},
        }

    def set_state(self, s: dict[str, object]) -> None:
        self.scaler.lo = np.asarray(s["lo"], float)
        self.scaler.hi = np.asarray(s["hi"], float)
        for k in self.state_fields:
            setattr(self, k, np.asarray(s[k]))
