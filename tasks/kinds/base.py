"""The trial-kind contract: what the client and scheduler need (validation, features,
defaults) and, apart from it, what a worker runs.

A minimal kind::

    class MyKind(TrialKind):
        name = "my-kind"

        def validate_spec(self, spec):          # client: normalize or InputError(field, ...)
            return {"n": int(spec["n"])}

        def run(self, spec, arm, options=None):  # worker
            return Outcome(cost=...)

registered by an entry point in its distribution (``[project.entry-points."banditq.kinds"]
my-kind = "my_pkg.kind:MyKind"``). Every other hook is optional; the defaults are below.

Split by process: a kind whose running needs heavy imports (torch, a model, scipy's solvers)
sets ``runner = "module:callable"`` instead of overriding :meth:`run`; the callable
``(spec, arm, options) -> Outcome`` is imported on workers only, when a trial runs, so client
and scheduler processes never load it. A kind's own module must stay light.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class Outcome:
    """What one run produced. ``cost`` is what the policy minimizes (>= 0, finite)."""

    cost: float
    iterations: int | None = None
    converged: bool | None = None
    residual: float | None = None
    quality: float | None = None
    #: the trial's own latency when it differs from the task's wall time (warm timings)
    latency_ms: float | None = None
    device: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    #: the arm was stopped at its budget (and the fallback solved): ``cost`` is a lower
    #: bound of what the arm would have cost, learnt as such ("at least this much")
    censored: bool = False


@dataclass
class KindExample:
    """A tiny instance of a kind, for the contract test suite every installed kind runs
    (validation, arms, options, one run): arms, a spec, and campaign settings."""

    arms: list[dict[str, Any]]
    spec: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)


class TrialKind:
    """One kind of trial. Stateless and thread-safe (one instance per process serves every
    campaign of the kind); ``run`` may cache per process."""

    name: ClassVar[str]
    #: policy used for ``policy="default"`` on this kind (None: banditq's default)
    default_policy: ClassVar[str | None] = None
    #: "module:callable" run on workers instead of :meth:`run` (see the module docstring)
    runner: ClassVar[str | None] = None
    #: trials are run by the caller (ask/tell: ``Campaign.ask``), never sent to a worker
    external: ClassVar[bool] = False
    #: units a decision's budget may take besides the campaign's cost unit ("matvec":
    #: products of the instance's matrix with a vector, converted by the kind's runner)
    budget_units: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------ client side
    def validate_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Normalize an instance spec or raise ``InputError`` naming the field. Required."""
        raise NotImplementedError(f"trial kind {self.name!r} does not define validate_spec")

    def validate_arms(self, arms: list[dict[str, Any]]) -> None:  # noqa: B027 - optional hook
        """Raise ``InputError`` naming ``arms[i].key`` when an arm is unusable. Default: any
        JSON object is an arm."""

    def campaign_options(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Validate and remove this kind's options from a new campaign's ``settings``
        (``InputError`` naming ``settings.key``); they reach ``run`` as ``options``.
        Default: the kind takes none."""
        return {}

    def decision_options(
        self, options: dict[str, Any] | None, monitored: bool
    ) -> dict[str, Any] | None:
        """The options ``run`` gets for one decision: the campaign's ``options`` (from
        :meth:`campaign_options`; None when it has none) and whether this trial is to be
        monitored (the policy asked for a quality probe, or the campaign's
        ``monitor_fraction`` drew it). Called by the scheduler; pure. Default: the campaign's
        options as they are."""
        return options

    def prepare_campaign(
        self,
        arms: list[dict[str, Any]],
        settings: dict[str, Any],
        policy: str,
        policy_config: dict[str, Any],
        features: list[str],
    ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], list[str]]:
        """Last say over a new campaign before it is written: may drop arms, add settings,
        fill the policy's config and choose the context features. ``policy`` is the
        resolved name. Default: unchanged."""
        return arms, settings, policy_config, features

    def default_arms(self, name: str) -> list[dict[str, Any]] | None:
        """The arms ``create_campaign(arms=name)`` stands for (e.g. ``"default"``), or None
        when the kind has no such set. Default: none."""
        return None

    def check_instance(self, spec: dict[str, Any], arms: list[dict[str, Any]]) -> None:  # noqa: B027
        """Raise ``InputError`` naming ``arms[i].key`` when a validated spec cannot be
        solved by one of the campaign's arms (checked at submit). Default: nothing."""

    def context_features(self, spec: dict[str, Any]) -> dict[str, float]:
        """Context features this kind derives from a validated spec at submit time; they
        fill the campaign's features the caller's context leaves out. Default: none."""
        return {}

    def reuse_key(self, spec: dict[str, Any]) -> str | None:
        """What a worker keeps between trials of this kind (a prepared matrix and the
        preconditioners set up on it), as a key of a validated spec: an instance whose key
        the submitting handle has seen before gets the context feature ``setup_cached`` = 1
        (else 0), as a repeated shape bucket is warm for the inference kind. Default: None
        (no such feature)."""
        return None

    def arm_label(self, arm: dict[str, Any]) -> str:
        """A short display name for an arm. Default: its ``key=value`` pairs, numbers as a
        person wrote them (``omega=1.95``, not the float's ``1.9500000000000002``)."""
        return ",".join(f"{k}={_shown(v)}" for k, v in arm.items())[:200]

    def example(self) -> KindExample | None:
        """A tiny instance (seconds to run), for the contract tests every installed kind
        goes through (``tests/unit/test_kind_contract.py``). Default: none (the tests then
        check only that bad specs are refused)."""
        return None

    # ------------------------------------------------------------ scheduler side
    def arm_unsupported(self, arm: dict[str, Any], device_type: str) -> str | None:
        """Why a worker of ``device_type`` (``cpu``, ``cuda``, ...) cannot run ``arm``, or
        None. Default: every arm runs everywhere."""
        return None

    def device_features(self, profile: dict[str, Any]) -> dict[str, float]:
        """Context features describing a worker device ``profile`` (its ``type``,
        ``capability``, ``threads``), for campaigns decided per device. Default: none."""
        return {}

    # ------------------------------------------------------------ scheduler side
    def cost_units(self, settings: dict[str, Any]) -> tuple[str, ...]:
        """Units besides the campaign's own that a policy may learn this kind's costs in
        (``policy_config.cost_unit``), for a campaign with stored ``settings``. Default: none."""
        return ()

    def policy_cost(self, cost: float, metrics: dict[str, Any], unit: str) -> float:
        """A result's ``cost`` in ``unit`` (one of :meth:`cost_units`), from the result's
        ``metrics``; ``ValueError`` saying why when they cannot tell (the scheduler then
        quarantines the result). Pure."""
        raise ValueError(f"the {self.name} kind does not give costs in {unit!r}")

    # ------------------------------------------------------------ worker side
    def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Load and compile what the first trial would (a worker calls it once at start,
        before it takes trials, so that no trial's latency includes it). Default: nothing;
        :func:`warm_by_example` runs the kind's example."""

    def run(
        self, spec: dict[str, Any], arm: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Outcome:
        """Execute on this worker (device chosen here, at run time). ``options`` are the
        campaign's kind options plus per-decision flags (``monitor``). Default: call
        :attr:`runner`."""
        if self.runner is None:
            raise NotImplementedError(f"trial kind {self.name!r} defines neither run nor runner")
        return load_runner(self.runner)(spec, arm, options)


def warm_by_example(kind: TrialKind) -> None:
    """Run ``kind``'s example once with its first arm (a kind's :meth:`TrialKind.warm_up`)."""
    example = kind.example()
    if example is not None:
        kind.run(kind.validate_spec(dict(example.spec)), example.arms[0], {})


_RUNNERS: dict[str, Any] = {}


def load_runner(path: str) -> Any:
    """Import ``module:callable`` once per process."""
    fn = _RUNNERS.get(path)
    if fn is None:
        module, _, attr = path.partition(":")
        fn = importlib.import_module(module)
        for part in attr.split("."):
            fn = getattr(fn, part)
        _RUNNERS[path] = fn
    return fn


def _shown(v: Any) -> Any:
    """A float at 12 significant digits (what linspace meant), anything else as it is."""
    return repr(float(f"{v:.12g}")) if isinstance(v, float) else v


def arm_name(arm: dict[str, Any]) -> str:
    """``key=value`` pairs in the arm's own order, at most 200 characters."""
    return ",".join(f"{k}={v}" for k, v in arm.items())[:200]
