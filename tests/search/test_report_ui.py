"""Report, optuna-dashboard and MLflow UI: numbers, HTTP APIs, and a real headless browser."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from search.cli import main
from search.report import build_report
from tests.conftest import PYTHON, ROOT, cli_env, free_port


def objective(trial: optuna.Trial) -> float:
    """`x` alone decides the value; `noise` and `colour` are irrelevant."""
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.suggest_float("noise", 0.0, 1.0)
    colour = trial.suggest_categorical("colour", ["red", "green", "blue"])
    if trial.number % 9 == 8:
        trial.set_user_attr("fail_reason", f"ValueError: synthetic failure {trial.number}")
        raise ValueError("synthetic failure")
    for epoch in range(3):
        trial.report(x * (epoch + 1) / 3, epoch)
        if colour == "red" and trial.number % 4 == 0 and epoch == 1:
            raise optuna.TrialPruned()
    return x


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('report')}/synthetic.db"
    study = optuna.create_study(study_name="synthetic", storage=url, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=40, catch=(ValueError,))
    return url


def test_report_figures_match_the_study(study_db: str, tmp_path: Path) -> None:
    study = optuna.load_study(study_name="synthetic", storage=study_db)
    report = build_report(study, max_epochs=3)
    assert report.tables["param_importances"]["parameter"].iloc[0] == "x"  # maximize: correct ranking
    history = report.figures["optimization_history"]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    objective_trace = next(d for d in history.data if d.name == "val_accuracy")
    assert list(objective_trace.y) == pytest.approx([t.value for t in complete])
    best_trace = next(d for d in history.data if d.name == "Best Value")
    assert max(best_trace.y) == pytest.approx(study.best_value)
    with_curves = [t for t in study.trials if t.intermediate_values]
    assert len(report.figures["intermediate_values"].data) == len(with_curves)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and report.pruning["pruned"] == len(pruned)
    finished = complete + pruned
    assert report.pruning["epochs_run"] == sum(len(t.intermediate_values) for t in finished)
    assert report.pruning["epochs_without_pruning"] == 3 * len(finished)
    failures = report.tables["failures"]
    assert len(failures) == len([t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]) > 0
    assert failures["reason"].str.startswith("ValueError: synthetic failure").all()
    assert report.tables["best_trials"]["val_accuracy"].iloc[0] == pytest.approx(study.best_value)

    assert main(["report", "--storage", study_db, "--study-name", "synthetic", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == len(study.trials)
    page = (tmp_path / "report.html").read_text()
    assert "Study synthetic" in page and page.count("<script") >= len(report.figures)


def test_report_refuses_unknown_study(study_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--storage", study_db, "--study-name", "nope", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: study 'nope' not found in {study_db}"


def test_report_logged_to_study_run(study_db: str, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["report", "--storage", study_db, "--study-name", "synthetic", "--out", str(tmp_path / "r")]
    assert main([*args, "--tracking-uri", uri]) == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("synthetic")
    (run,) = client.search_runs([exp.experiment_id], filter_string="tags.run_type = 'study'")
    assert {a.path for a in client.list_artifacts(run.info.run_id, "report")} == {"report/report.html",
                                                                                 "report/trials.csv"}


# -- live servers and a browser ------------------------------------------------------------


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def dashboard(study_db: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    port = free_port()
    log = open(tmp_path_factory.mktemp("dash") / "dashboard.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([PYTHON, "-m", "search", "dashboard", "--storage", study_db, "--port", str(port)],
                            cwd=ROOT, env=cli_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            get_json(url + "/api/studies")
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"dashboard did not start: {Path(log.name).read_text()[-2000:]}") from None
            time.sleep(0.3)
    yield url
    os.killpg(proc.pid, 15)
    proc.wait(10)


def test_dashboard_api_lists_study_trials_and_importances(dashboard: str, study_db: str) -> None:
    study = optuna.load_study(study_name="synthetic", storage=study_db)
    studies = get_json(dashboard + "/api/studies")["study_summaries"]
    (summary,) = [s for s in studies if s["study_name"] == "synthetic"]
    detail = get_json(f"{dashboard}/api/studies/{summary['study_id']}?after=0")
    assert len(detail["trials"]) == len(study.trials)
    importances = get_json(f"{dashboard}/api/studies/{summary['study_id']}/param_importances")
    ranking = sorted(importances["param_importances"][0], key=lambda p: -p["importance"])
    assert ranking[0]["name"] == "x"


def test_dashboard_refuses_foreign_host_headers(dashboard: str) -> None:
    """optuna-dashboard can delete studies: a page on another origin (DNS rebinding) gets 403."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(dashboard + "/api/studies", headers={"Host": "evil.example:80"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert get_json(dashboard + "/api/studies")["study_summaries"]  # its own address still works


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"], env=env,
                       capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if not found:
        pytest.fail("headless Chromium is required for the browser tests and could not be installed "
                    "(apt-get install chromium)")
    return found


def render(url: str, screenshot: Path, wait_ms: int = 15000) -> tuple[str, str]:
    """(DOM after scripts ran, console log) of one page, plus a PNG screenshot."""
    browser = chromium()
    profile = tempfile.mkdtemp(prefix="chromium-")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
             f"--user-data-dir={profile}", "--window-size=1400,1000", f"--virtual-time-budget={wait_ms}",
             "--enable-logging=stderr", "--v=0"]
    try:
        dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
        shot = subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, text=True,
                              timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert screenshot.exists() and screenshot.stat().st_size > 5000
    console = "\n".join(line for line in (dom.stderr + shot.stderr).splitlines() if "CONSOLE" in line)
    return dom.stdout, console


def assert_no_js_errors(console: str) -> None:
    errors = [line for line in console.splitlines() if "Uncaught" in line or "TypeError" in line]
    assert not errors, errors


def test_browser_renders_report(study_db: str, tmp_path: Path) -> None:
    assert main(["report", "--storage", study_db, "--study-name", "synthetic", "--out", str(tmp_path)]) == 0
    dom, console = render((tmp_path / "report.html").as_uri(), tmp_path / "report.png")
    assert "Study synthetic" in dom
    assert dom.count('class="main-svg"') >= 6  # plotly drew the figures
    assert "param importances" in dom and "failures (" in dom
    assert_no_js_errors(console)


def test_browser_renders_dashboard(dashboard: str, tmp_path: Path) -> None:
    dom, console = render(dashboard + "/dashboard/studies/1", tmp_path / "dashboard.png")
    assert "synthetic" in dom
    assert "Trial" in dom or "trial" in dom
    assert_no_js_errors(console)


def test_browser_renders_mlflow_ui_command(tmp_path: Path) -> None:
    """`python -m search ui` serves the local store; the experiment page lists the runs."""
    from search.tracking import MlflowTracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    name = "browser-check"
    tracker = MlflowTracker(uri, name, artifact_root=str(tmp_path / "artifacts"))
    exp_id = tracker.ensure_experiment()
    for i in range(3):
        run = tracker.client.create_run(exp_id, run_name=f"trial-{i}")
        tracker.client.log_metric(run.info.run_id, "val_accuracy", 0.5 + i / 10)
    port = free_port()
    log = open(tmp_path / "ui.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([PYTHON, "-m", "search", "ui", "--tracking-uri", uri, "--port", str(port)],
                            cwd=ROOT, env=cli_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"ui did not start: {(tmp_path / 'ui.log').read_text()[-2000:]}") from None
                time.sleep(0.5)
        dom, console = render(f"{url}/#/experiments/{exp_id}/runs", tmp_path / "mlflow.png", wait_ms=25000)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(20)
    assert name in dom
    assert "trial-2" in dom
    assert_no_js_errors(console)
