"""A self-contained HTML report of a study (plotly figures from optuna.visualization) + trials.csv."""

from __future__ import annotations

import argparse
import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import TrialState

from search.urls import mask_url

log = logging.getLogger(__name__)


@dataclass
class Report:
    study_name: str
    figures: dict[str, go.Figure] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    pruning: dict[str, float] = field(default_factory=dict)


def pruning_statistics(study: optuna.Study, max_epochs: int | None) -> tuple[go.Figure, dict[str, float]]:
    """Epochs each trial ran vs the epochs a search without pruning would have run."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    ran = [len(t.intermediate_values) for t in trials]
    budget = max_epochs or max(ran, default=0)
    stats = {
        "trials": float(len(trials)),
        "pruned": float(sum(t.state == TrialState.PRUNED for t in trials)),
        "epochs_run": float(sum(ran)),
        "epochs_without_pruning": float(budget * len(trials)),
    }
    stats["epochs_saved_fraction"] = (
        1.0 - stats["epochs_run"] / stats["epochs_without_pruning"] if stats["epochs_without_pruning"] else 0.0
    )
    colors = ["#d62728" if t.state == TrialState.PRUNED else "#1f77b4" for t in trials]
    fig = go.Figure(go.Bar(x=[t.number for t in trials], y=ran, marker_color=colors, name="epochs run"))
    fig.add_hline(y=budget, line_dash="dash", annotation_text=f"max_epochs = {budget}")
    fig.update_layout(title=f"Pruning: {int(stats['epochs_run'])} of {int(stats['epochs_without_pruning'])} "
                            f"epochs run ({stats['epochs_saved_fraction']:.0%} saved); red = pruned",
                      xaxis_title="trial", yaxis_title="epochs")
    return fig, stats


def accuracy_latency_front(trials: list[optuna.trial.FrozenTrial]) -> tuple[go.Figure, pd.DataFrame]:
    """Validation accuracy vs latency per example (batch 1); the Pareto front joined by a line.

    Feasible trials (within the config's constraints) are blue, the others grey.
    """
    rows = pd.DataFrame([{"trial": t.number, "val_accuracy": t.value, "latency_ms_b1": t.user_attrs["latency_ms_b1"],
                          "latency_ms_b256": t.user_attrs.get("latency_ms_b256"), "n_params": t.user_attrs.get(
                              "n_params"), "feasible": t.user_attrs.get("feasible", True)} for t in trials])
    ordered = rows.sort_values(["latency_ms_b1", "val_accuracy"], ascending=[True, False])
    front = ordered[ordered["val_accuracy"] > ordered["val_accuracy"].cummax().shift(fill_value=-1.0)]
    fig = go.Figure()
    for feasible, color in ((True, "#1f77b4"), (False, "#bbbbbb")):
        part = rows[rows["feasible"] == feasible]
        if len(part):
            fig.add_trace(go.Scatter(x=part["latency_ms_b1"], y=part["val_accuracy"], mode="markers",
                                     marker_color=color, text=[f"trial {n}" for n in part["trial"]],
                                     name="within constraints" if feasible else "outside constraints"))
    fig.add_trace(go.Scatter(x=front["latency_ms_b1"], y=front["val_accuracy"], mode="lines+markers",
                             line_shape="hv", name="Pareto front", marker_color="#d62728"))
    fig.update_layout(title="Validation accuracy vs latency (ms per example, batch 1)",
                      xaxis_title="latency_ms_b1", yaxis_title="val_accuracy")
    return fig, front.reset_index(drop=True)


def build_report(study: optuna.Study, max_epochs: int | None = None, top_k: int = 10) -> Report:
    import optuna.visualization as vis

    report = Report(study.study_name)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    report.figures["optimization_history"] = vis.plot_optimization_history(study, target_name="val_accuracy")
    if len(complete) >= 2:
        # Optuna 5's default evaluator (PED-ANOVA) follows the study direction when no target is given.
        importances = optuna.importance.get_param_importances(study)
        report.figures["param_importances"] = vis.plot_param_importances(study, target_name="val_accuracy")
        report.tables["param_importances"] = pd.DataFrame(
            {"parameter": list(importances), "importance": list(importances.values())})
        top = [name for name in importances][:4]
        report.figures["slice"] = vis.plot_slice(study, params=top, target_name="val_accuracy")
        report.figures["parallel_coordinate"] = vis.plot_parallel_coordinate(study, target_name="val_accuracy")
    else:
        report.notes["param_importances"] = f"needs 2 COMPLETE trials, the study has {len(complete)}"
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        report.figures["intermediate_values"] = vis.plot_intermediate_values(study)
    derived = study.user_attrs.get("derived_from_data")
    if derived:
        report.notes["derived_from_data"] = "choices taken from the training data (the config left them out): " + \
            "; ".join(f"{name} {values}" for name, values in derived.items())
    warm = study.user_attrs.get("warm_start")
    if warm and warm.get("queued"):
        sources = ", ".join([f"study {n}" for n in warm.get("studies", [])]
                            + [f"experiment {n}" for n in warm.get("experiments", [])])
        portfolio = ", the best of earlier searches on other data sets (portfolio)" if warm.get("portfolio") else ""
        report.notes["warm_start"] = (f"{warm['queued']} configuration(s) queued to run first: the config's "
                                      f"enqueue entries{', the best of ' + sources if sources else ''}{portfolio}"
                                      f"{', the baseline trial' if warm.get('baseline_trial') else ''}"
                                      f"{' and its neighbours' if warm.get('neighbours') else ''}")
    if warm and warm.get("weights"):
        report.notes["warm_start_weights"] = (f"every trial started from the weights of {warm['weights']} "
                                              "(its architecture fixed; see the trials' transferred_words)")
    report.figures["pruning"], report.pruning = pruning_statistics(study, max_epochs)
    measured = [t for t in complete if "latency_ms_b1" in t.user_attrs]
    if measured:
        report.figures["accuracy_vs_latency"], report.tables["pareto_front"] = accuracy_latency_front(measured)
    rows = sorted(complete, key=lambda t: t.value or 0.0, reverse=True)[:top_k]
    report.tables["best_trials"] = pd.DataFrame(
        [{"trial": t.number, "val_accuracy": t.value, **t.params} for t in rows])
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    report.tables["failures"] = pd.DataFrame(
        [{"trial": t.number, "reason": t.user_attrs.get("fail_reason", "(none recorded)")} for t in failed],
        columns=["trial", "reason"])
    return report


def render_html(report: Report) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Study {html.escape(report.study_name)}"
             "</title><style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}</style></head><body>",
             f"<h1>Study {html.escape(report.study_name)}</h1>"]
    first = True
    for name, fig in report.figures.items():
        parts.append(f"<h2 id='{name}'>{name.replace('_', ' ')}</h2>")
        # The first figure inlines plotly.js so the file works offline; the others reuse it.
        parts.append(fig.to_html(full_html=False, include_plotlyjs=True if first else False, div_id=f"fig-{name}"))
        first = False
    for name, note in report.notes.items():
        parts.append(f"<h2>{name.replace('_', ' ')}</h2><p>{html.escape(note)}</p>")
    for name, table in report.tables.items():
        parts.append(f"<h2 id='{name}'>{name.replace('_', ' ')} ({len(table)})</h2>")
        parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0) if len(table)
                     else "<p>none</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(study: optuna.Study, out: Path, max_epochs: int | None = None) -> tuple[Report, list[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(study, max_epochs)
    page = out / "report.html"
    csv = out / "trials.csv"
    tmp = page.with_suffix(".tmp")
    tmp.write_text(render_html(report), encoding="utf-8")
    tmp.replace(page)
    study.trials_dataframe().to_csv(csv, index=False)
    return report, [page, csv]


def main(args: argparse.Namespace) -> int:
    from search.config import load_config
    from search.errors import UsageError
    from search.storage import StorageError, check_sqlite_path, is_sqlite, make_storage, study_exists

    config = load_config(args.config) if args.config else None
    storage_url = args.storage or (config.storage_url if config else None)
    study_name = args.study_name or (config.study_name if config else None)
    if not storage_url or not study_name:
        raise UsageError("report needs --storage and --study-name (or --config)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    if is_sqlite(storage_url):
        check_sqlite_path(storage_url, must_exist=True)  # a typo must not create an empty database
    storage = make_storage(storage_url)
    if not study_exists(storage, study_name):
        raise StorageError(f"study '{study_name}' not found in {mask_url(storage_url)}")
    study = optuna.load_study(study_name=study_name, storage=storage)
    max_epochs = config.training.max_epochs if config else None
    report, files = write_report(study, out, max_epochs)
    print(f"report: {files[0]} ({len(report.figures)} figures), {files[1]} ({len(study.trials)} trials)")
    tracking_uri = args.tracking_uri or (config.tracking.uri if config else None)
    if tracking_uri:
        from search.tracking import MlflowTracker

        tracker = MlflowTracker(tracking_uri, config.experiment_name if config else study_name)
        tracker.check_reachable()
        tracker.ensure_experiment()
        run_id = tracker.refresh_study_summary(study)
        for path in files:
            tracker.client.log_artifact(run_id, str(path), artifact_path="report")
        print(f"report logged to MLflow run {run_id} on {tracker.masked_uri}")
    return 0
