"""The campaign handle users hold: submit, wait/solve, results, plots and reports."""

from __future__ import annotations

from typing import Any

from app.client import store
from app.client.asking import Asking
from app.client.completion import Completion
from app.client.rows import decode_row, tidy
from tasks.errors import InputError


class Campaign(Completion, Asking):
    """A handle on one campaign (see :class:`app.client.Client.campaign`): submitting
    (:class:`~app.client.submitting.Submission`), waiting and solving
    (:class:`~app.client.completion.Completion`), ask/tell for external campaigns
    (:class:`~app.client.asking.Asking`), and reading what it learnt."""

    def results(self, as_frame: bool = False) -> Any:
        """Rows of the ``trial_results`` view for this campaign, in submission order; with
        ``as_frame`` a pandas DataFrame with one column per context feature and arm
        parameter (``ctx.shift``, ``arm.omega``)."""
        with self.client.engine.connect() as conn:
            rows = [decode_row(r) for r in store.result_rows(conn, self.name)]
        if as_frame:
            import pandas as pd

            return pd.DataFrame(tidy(rows))
        return rows

    def plot(self, kind: str = "cost") -> Any:
        """A matplotlib Figure of this campaign (``kind``: one of ``app.report.plots.PLOTS``:
        cost, arms, cost-by-arm, reasons, propensity, faults, workers, inference)."""
        from app.report import data, plots

        if kind not in plots.PLOTS:
            raise InputError(
                "kind", f"unknown plot {kind!r}; choose one of {', '.join(plots.PLOTS)}"
            )
        return plots.PLOTS[kind](data.load(self.client.engine, self.name), None)

    def report(self, path: str = "report.html", png_dir: str | None = None) -> str:
        """Write the self-contained HTML report (and PNGs to ``png_dir``); returns the path."""
        from app.report import data, html

        html.write_report(data.load(self.client.engine, self.name), path, png_dir)
        return path

    # ------------------------------------------------------------------ lifecycle
    def pause(self) -> str:
        """New submits are refused; what was submitted still runs."""
        from app.client import lifecycle

        return lifecycle.pause(self.client, self.name)

    def resume(self) -> str:
        """Active again (also a broken campaign: fix what broke it first)."""
        from app.client import lifecycle

        return lifecycle.resume(self.client, self.name)

    def cancel(self) -> dict[str, int]:
        """Pause and withdraw what has not started (pending instances, queued trials)."""
        from app.client import lifecycle

        return lifecycle.cancel(self.client, self.name)

    def delete(self) -> None:
        """Delete the campaign and its records (its arrays are left for `store gc`)."""
        from app.client import lifecycle

        lifecycle.delete_campaign(self.client, self.name)

    def retry_failed(self) -> int:
        """Put failed instances back to pending; returns how many."""
        from app.client import lifecycle

        return lifecycle.retry_failed(self.client, self.name)

    def status(self) -> dict[str, Any]:
        from app.client.status import campaign_status

        return campaign_status(self.client, self.name)
