"""The model space of ``smooth-ts``: the arm basis (each context point's arm curve as M
coefficients) and the Gaussian prior precision over the G**d x M coefficients of the
tensor context grid. Pure construction, no state beyond the returned values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from app.policies.splines import bspline_basis, divided_diff


@dataclass(frozen=True)
class ArmBasis:
    """``B`` (K x M): arm values = ``B`` @ coefficients, per context point. ``idx`` / ``w``
    (K x s): each arm's non-zero coefficients and weights (padding: weight 0 on coef 0)."""

    B: np.ndarray
    idx: np.ndarray
    w: np.ndarray
    #: where each listed arm sits on the ordered curve (None: listed in order)
    rank: np.ndarray | None = None

    @property
    def in_order(self) -> np.ndarray:
        """``B`` with its rows in the arms' order along the curve (priors over neighbours
        are stated there)."""
        return self.B if self.rank is None else self.B[np.argsort(self.rank)]

    @property
    def M(self) -> int:
        return int(self.B.shape[1])

    @property
    def identity(self) -> bool:
        """One value per arm (no basis; the arms may be listed in another order)."""
        return bool(self.B.shape[0] == self.M)

    @property
    def plain(self) -> bool:
        """``B`` is the identity matrix: coefficients are the arm values as listed."""
        return self.identity and bool(np.all(self.idx[:, 0] == np.arange(self.B.shape[0])))

    @classmethod
    def make(
        cls, n_arms: int, ordered: bool, arm_basis: int | None, rank: np.ndarray | None = None
    ) -> ArmBasis:
        """Many ordered arms (auto: more than 24) sample a smooth curve whose degrees of
        freedom are far fewer than the arms: M = max(8, K/4) cubic B-spline coefficients
        cut the model (P = J M) and its cost (updates O(P^2), refits O(P^3)) while a
        minimum between knots stays reachable. Otherwise (or M >= K) the identity."""
        K = n_arms
        if arm_basis is None:
            arm_basis = max(8, -(-K // 4)) if ordered and K > 24 else K
        if int(arm_basis) < K and not ordered:
            raise ValueError("policy_config.arm_basis < the number of arms needs ordered arms")
        if int(arm_basis) < min(4, K):  # a cubic basis has at least 4 coefficients
            raise ValueError(f"policy_config.arm_basis={arm_basis} must be >= {min(4, K)}")
        B = bspline_basis(K, int(arm_basis))
        if rank is not None:
            # arms listed out of order: arm a sits at position rank[a] of the ordered curve
            B = B[np.asarray(rank, dtype=np.int64)]
        nz = [np.flatnonzero(row) for row in B]
        s = max(len(z) for z in nz)
        idx = np.zeros((K, s), dtype=np.int64)
        w = np.zeros((K, s))
        for a, z in enumerate(nz):
            idx[a, : len(z)] = z
            w[a, : len(z)] = B[a, z]
        return cls(B, idx, w, None if rank is None else np.asarray(rank, dtype=np.int64))


#: model coefficients (context grid points x arm coefficients) a campaign may ask for: the
#: posterior precision is P x P doubles (128 MiB at this bound)
MAX_COEFFICIENTS = 4096


def arm_order(
    positions: np.ndarray, given: bool, ordered: bool | None
) -> tuple[bool, np.ndarray | None]:
    """(ordered, rank): the arms are ordered when they are numbers on one axis, in whatever
    order they are listed (omegas given out of order are still a continuum), unless
    ``ordered`` says otherwise; arms that are not numbers (solver configurations, ``given``
    False) have no order to exploit. ``rank`` places each listed arm on the ordered curve
    (None when listed in order)."""
    K = positions.shape[0]
    one_axis = positions.shape[1] == 1
    if ordered is None:
        ordered = given and one_axis and len(np.unique(positions[:, 0])) == K
    if not (ordered and one_axis and np.any(np.diff(positions[:, 0]) <= 0)):
        return bool(ordered), None
    rank = np.argsort(np.argsort(positions[:, 0], kind="stable"), kind="stable")
    return True, rank


def check_model_size(G: int, d: int, M: int) -> None:
    """ValueError when G**d context points x M coefficients exceed MAX_COEFFICIENTS: the
    state holds a P x P precision, bounded before anything is allocated."""
    size = G**d * M
    if size > MAX_COEFFICIENTS:
        raise ValueError(
            f"policy_config.knots={G} with {d} feature(s) and {M} arm coefficients gives "
            f"{size} model coefficients, over {MAX_COEFFICIENTS}"
        )


def along_axis(G: int, d: int, j: int, M: np.ndarray) -> sp.csr_matrix:
    """``M`` (G x G) acting on context axis j of the G**d-point tensor grid (sparse)."""
    mats = [sp.identity(G, format="csr")] * d
    mats[j] = sp.csr_matrix(M)
    full = mats[0]
    for m in mats[1:]:
        full = sp.kron(full, m, format="csr")
    return sp.csr_matrix(full)


def prior_precision(
    knots: list[np.ndarray],
    basis: ArmBasis,
    ordered: bool,
    ridge: float,
    arm_s: float,
    ctx_s: float,
    arm_slope: float,
    trend: float,
    shape_slope: float = 0.0,
) -> np.ndarray:
    """The prior precision over the coefficients (P x P, P = G**d M), grid point by grid
    point, M coefficients each; ``knots``: one array of G knots per context feature."""
    B = basis.B
    K, d = B.shape[0], len(knots)
    G = len(knots[0]) if d else 1
    J = G**d
    # Priors are stated on the arm values (theta = B c per context point) and projected
    # exactly onto the coefficients: a quadratic form A on arm values is B' A B.
    BtB = B.T @ B
    eye_J = sp.identity(J, format="csr")
    # Kronecker products of banded factors: summed sparse, made dense once.
    Lam = ridge * sp.kron(eye_J, BtB, format="csr")
    if ordered and K >= 3:
        Bo = basis.in_order
        Da = divided_diff(np.arange(K, dtype=float), 2) @ Bo
        Da1 = divided_diff(np.arange(K, dtype=float), 1) @ Bo
        # The global slope across arms (log-units end to end) is what the second
        # difference leaves free; bound it without penalizing steep local sides.
        v = np.linspace(-1.0, 1.0, K)
        v = (v / (v @ v)) @ Bo  # v @ theta_row = least-squares end-to-end half-slope
        arm = arm_s * Da.T @ Da + arm_slope * Da1.T @ Da1 + trend * np.outer(v, v)
        Lam += sp.kron(eye_J, arm, format="csr")
    if d > 0 and G >= 3:
        for j in range(d):  # smooth along each context axis of the tensor grid
            Dc = divided_diff(knots[j], 2)
            Lam += ctx_s * sp.kron(along_axis(G, d, j, Dc.T @ Dc), BtB, format="csr")
    if d > 0 and G >= 2 and K >= 2 and shape_slope > 0:
        # The arms' profile (each arm less their mean) changes slowly across contexts,
        # while the level (the mean, common to all arms, irrelevant to the choice) may
        # move freely: one trial at a new context then borrows the profile of its
        # neighbours instead of leaving every arm's value there open.
        C = B.T @ (np.eye(K) - 1.0 / K) @ B
        for j in range(d):
            D1 = divided_diff(knots[j], 1)
            Lam += shape_slope * sp.kron(along_axis(G, d, j, D1.T @ D1), C, format="csr")
    return np.asarray(Lam.toarray())
