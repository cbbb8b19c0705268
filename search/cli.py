"""``python -m search``: run, init, worker, register, pull, predict, report, dashboard, ui."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from search.errors import UsageError

EXIT_USAGE = 2

ENV_DEFAULTS = {"config": "SEARCH_CONFIG", "storage": "SEARCH_STORAGE", "study_name": "SEARCH_STUDY"}
OVERRIDES = {
    "storage": "storage",
    "study_name": "study_name",
    "seed": "seed",
    "train_file": "data.train_file",
    "test_file": "data.test_file",
    "max_epochs": "training.max_epochs",
    "tracking_uri": "tracking.uri",
    "heartbeat_interval": "worker.heartbeat_interval",
    "grace_period": "worker.grace_period",
}


def _study_options(p: argparse.ArgumentParser, *, budget: bool) -> None:
    env = os.environ.get
    p.add_argument("--config", default=env("SEARCH_CONFIG"), help="study YAML file (env SEARCH_CONFIG)")
    p.add_argument("--storage", default=env("SEARCH_STORAGE"),
                   help="Optuna storage URL (env SEARCH_STORAGE; default sqlite:///studies/<name>.db)")
    p.add_argument("--study-name", default=env("SEARCH_STUDY"), help="study name (env SEARCH_STUDY)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (env MLFLOW_TRACKING_URI; default sqlite:///mlruns/mlflow.db)")
    p.add_argument("--seed", type=int, default=None, help="seed for the sampler and training")
    p.add_argument("--train-file", default=None, help="override data.train_file")
    p.add_argument("--test-file", default=None, help="override data.test_file")
    p.add_argument("--max-epochs", type=int, default=None, help="override training.max_epochs")
    p.add_argument("--heartbeat-interval", type=int, default=None, help="seconds between trial heartbeats")
    p.add_argument("--grace-period", type=int, default=None, help="seconds without heartbeat before a trial is stale")
    p.add_argument("--wait", type=float, default=_env_float("SEARCH_WAIT") or 0.0,
                   help="retry an unreachable storage/tracking server for this many seconds (env SEARCH_WAIT)")
    if budget:
        p.add_argument("--n-trials", type=_positive(int), default=None, help="run this many more trials")
        p.add_argument("--timeout", type=_positive(float), default=None, help="stop starting trials after S seconds")
        p.add_argument("--max-stagnation-trials", type=_non_negative_int, default=None,
                       help="override max_stagnation_trials (0: never stop for lack of improvement)")
        p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow (no registry)")
        # A string default goes through `type` too: a bad SEARCH_CPU_THREADS is a one-line error.
        p.add_argument("--cpu-threads", type=_positive(int), default=env("SEARCH_CPU_THREADS") or None,
                       help="intra-op threads for training (env SEARCH_CPU_THREADS; default: every core). "
                            "With N workers on one host, cores/N each")
        p.add_argument("--verbose", "-v", action="count", default=0, help="show Keras progress")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (``error: argument --n-trials: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m search",
        description="Hyperparameter search for recurrent text classifiers (Optuna + Keras + MLflow).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="create/resume the study and run trials in this process")
    _study_options(p, budget=True)

    p = sub.add_parser("init", help="create the study and MLflow experiment once (before parallel workers)")
    _study_options(p, budget=False)

    p = sub.add_parser("worker", help="run trials against an existing study until it holds --target-trials")
    _study_options(p, budget=True)
    p.add_argument("--target-trials", type=_positive(int), default=_env_int("SEARCH_TARGET_TRIALS"),
                   help="stop once the study holds N COMPLETE+PRUNED trials (env SEARCH_TARGET_TRIALS)")

    p = sub.add_parser("register", help="register the best COMPLETE trial as alias 'champion'")
    _study_options(p, budget=False)

    p = sub.add_parser("pull", help="download a registered model's best.h5 and sidecar.json")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--alias", default="champion")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--tracking-uri", default=None)

    p = sub.add_parser("predict", help="classify raw text with a model bundle or models:/NAME@ALIAS")
    p.add_argument("--model", required=True, help="a pulled bundle directory or models:/NAME@ALIAS")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--file", default=None, help="read texts from this file, one per line")
    p.add_argument("texts", nargs="*", help="texts to classify (default: lines from stdin)")

    p = sub.add_parser("report", help="write an HTML report (plotly) and trials.csv for a study")
    p.add_argument("--config", default=os.environ.get("SEARCH_CONFIG"))
    p.add_argument("--storage", default=os.environ.get("SEARCH_STORAGE"))
    p.add_argument("--study-name", default=os.environ.get("SEARCH_STUDY"))
    p.add_argument("--tracking-uri", default=None, help="also log the report to the study-summary run")
    p.add_argument("--out", required=True, help="output directory")

    p = sub.add_parser("dashboard", help="start optuna-dashboard on the study storage")
    p.add_argument("--config", default=os.environ.get("SEARCH_CONFIG"))
    p.add_argument("--storage", default=os.environ.get("SEARCH_STORAGE"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--allowed-hosts", default=os.environ.get("DASHBOARD_ALLOWED_HOSTS"),
                   help="extra Host names to accept, e.g. myhost:8080 (env DASHBOARD_ALLOWED_HOSTS)")

    p = sub.add_parser("ui", help="start the MLflow UI for the project's tracking store")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--allowed-hosts", default=None, help="extra Host names to accept (comma-separated)")
    return parser


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be > 0 and finite, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text}")
    return int(text)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def _env_float(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


def load_study_config(args: argparse.Namespace) -> Any:
    from search.config import ConfigError, load_config, parse_config

    overrides = {dotted: getattr(args, attr, None) for attr, dotted in OVERRIDES.items()}
    if args.study_name:
        # The study name names the experiment and the registered model: a renamed study must
        # not log into, or move the champion alias of, the study it was copied from.
        overrides["tracking.experiment"] = overrides["tracking.model_name"] = args.study_name
    if args.config:
        return load_config(args.config, overrides)
    if not (args.study_name and args.storage and getattr(args, "train_file", None)):
        raise ConfigError("no --config given (or SEARCH_CONFIG); without one pass --study-name, --storage "
                          "and --train-file")
    return parse_config({"study_name": args.study_name, "data": {}}, "<command line>", overrides)


def _tracker(config: Any, wait: float = 0.0) -> Any:
    from search.tracking import MlflowTracker

    tracker = MlflowTracker(config.tracking.uri, config.experiment_name)
    tracker.check_reachable(wait=wait)
    return tracker


def _header(config: Any, tracker: Any, study: Any) -> None:
    from search.storage import count_states
    from search.urls import mask_url

    tracking = tracker.masked_uri if tracker.enabled else "off"
    counts = count_states(study)
    queued = f" ({counts['WAITING']} queued)" if counts["WAITING"] else ""
    print(f"study {config.study_name}: storage {mask_url(config.storage_url)}, tracking {tracking}, "
          f"{len(study.trials) - counts['WAITING']} trials so far{queued}", flush=True)


def _finish(config: Any, tracker: Any, study: Any, worker_mode: bool = False, ran: int = 0) -> None:
    from search.registry import register_champion, selection_rule
    from search.storage import count_states

    counts = {k: v for k, v in count_states(study).items() if v}
    print("trials: " + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
    if not tracker.enabled:
        return
    from mlflow.exceptions import MlflowException

    from search.errors import RegistryError

    try:
        tracker.refresh_study_summary(study)
        left_elsewhere = worker_mode and config.ensemble_size > 1 and ensemble_left_elsewhere(study, ran)
        if left_elsewhere:
            print(left_elsewhere, flush=True)
            return
        champion = register_champion(tracker, study, config)
    except MlflowException as exc:
        # The trials are stored whatever happened here: say how to retry rather than dump a trace.
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise RegistryError(f"champion not registered on {tracker.masked_uri}: {reason} (the trials are "
                            f"stored; retry with: python -m search register --config ...)") from None
    if champion is None:
        print("no COMPLETE trial meets the selection rule yet: no champion registered "
              f"(rule: {selection_rule(config)})", flush=True)
        return
    verb = "registered" if champion.moved else "unchanged"
    test = f", test_accuracy={champion.test_accuracy:.4f}" if champion.test_accuracy is not None else ""
    what = (f"ensemble of trials {', '.join(map(str, champion.members))}" if champion.members
            else f"trial {champion.trial_number}")
    print(f"champion {verb}: models:/{champion.model_name}@champion = version {champion.version} "
          f"({what}, val_accuracy={champion.value:.4f}{test}; rule: "
          f"{selection_rule(config)})", flush=True)


def ensemble_left_elsewhere(study: Any, ran: int) -> str | None:
    """Why this worker leaves the ensemble champion to another one (None: it builds it).

    Building an ensemble downloads, scores and logs every member: of workers finishing one after
    another only the last does it (it sees every trial), and of workers stopping at the same
    instant (none sees a trial running) the one whose trial ended last. A worker that ran no
    trial registers as before; `register` redoes it at any time.
    """
    import optuna

    from search.identity import worker_id
    from search.storage import count_states
    from search.worker import last_finisher

    optuna.storages.fail_stale_trials(study)  # trials of dead workers are not running
    if count_states(study)["RUNNING"]:
        return "champion left to the last worker (trials still running)"
    last = last_finisher(study) if ran else None
    if last is not None and last != worker_id():
        return f"champion left to worker {last}, whose trial ended last"
    return None


def _validate_inputs(config: Any) -> Any:
    """Read and validate every data file (and a ``warm_start.weights`` bundle's sidecar) before
    anything is written; returns the config with data-derived choices for the parameters it left
    out and the weight source's architecture fixed (deterministic: every worker agrees)."""
    from data_pipeline import load_corpus
    from data_pipeline.stats import corpus_stats

    registered = config.warm_start.weights_from_registry
    if not registered:
        config = config.with_weight_source()  # a bad bundle fails before the data are read
    if config.derived_from_data:
        stats = corpus_stats(config.data)
    else:
        stats = None
        load_corpus(config.data)  # validation only: counting tokens would be wasted
    if registered:  # downloaded only once the data passed, for a study that can start
        from search.registry import fetch_weight_source

        directory, origin = fetch_weight_source(config.warm_start.weights, config.tracking.uri,
                                                Path(config.data.cache_dir).parent / "sources")
        config = config.model_copy(update={"warm_start": config.warm_start.model_copy(
            update={"weights": str(directory), "weights_origin": origin})}).with_weight_source()
    return config if stats is None else config.with_data_aware_space(stats)


def cmd_run(args: argparse.Namespace, worker_mode: bool = False) -> int:
    # Keras/TensorFlow are imported only after config, data, tracking and storage checks
    # passed: a bad input fails in about a second.
    from search.objective import Objective
    from search.progress import ProgressPrinter, quiet_failed_trial_logs
    from search.signals import GracefulStop
    from search.storage import check_reachable as check_storage
    from search.storage import count_states, is_sqlite, stale_trial_hooks
    from search.study import create_study, first_trials, load_study
    from search.tracking import NullTracker
    from search.worker import run_worker

    config = load_study_config(args)
    if not args.verbose:
        quiet_failed_trial_logs()
    stop = GracefulStop().install()
    config = _validate_inputs(config)
    check_storage(config.storage_url, wait=args.wait)
    # Before the tracker, which creates its store: a missing warm-start source writes nothing.
    first = None if worker_mode else first_trials(config)
    tracker = NullTracker() if args.no_tracking else _tracker(config, args.wait)
    if worker_mode:
        study = load_study(config)
        if is_sqlite(config.storage_url) and count_states(study)["RUNNING"]:
            print("warning: other workers are running on a SQLite study; use PostgreSQL "
                  "(postgresql+psycopg://...) for parallel workers", file=sys.stderr, flush=True)
    else:
        study = create_study(config, first=first)
    import_keras_quietly()
    if tracker.enabled:
        tracker.ensure_experiment()
        hooks = stale_trial_hooks(study)
        if hooks is not None:
            hooks.append(tracker.close_stale_run)
    from models.runtime import configure_accelerator

    device = configure_accelerator(config.training.mixed_precision, cpu_threads=args.cpu_threads)
    _header(config, tracker, study)
    print(f"device {device}", flush=True)
    objective = Objective(config, tracker, stop, verbose=1 if args.verbose else 0)
    n_trials = args.n_trials if args.n_trials is not None else (None if worker_mode else config.n_trials)
    timeout = args.timeout if args.timeout is not None else (None if worker_mode else config.timeout)
    stagnation = config.max_stagnation_trials if args.max_stagnation_trials is None else args.max_stagnation_trials
    ran = run_worker(study, objective, target=getattr(args, "target_trials", None), n_trials=n_trials,
                     timeout=timeout, stop=stop, callbacks=[ProgressPrinter()],
                     max_consecutive_failures=config.worker.max_consecutive_failures,
                     max_stagnation_trials=stagnation or None)
    _finish(config, tracker, study, worker_mode, ran)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from search.storage import check_reachable as check_storage
    from search.study import create_study, first_trials
    from search.urls import mask_url

    config = load_study_config(args)
    config = _validate_inputs(config)
    check_storage(config.storage_url, wait=args.wait)
    first = first_trials(config)  # before the tracker, which creates its store
    tracker = _tracker(config, args.wait)
    study = create_study(config, heartbeat=False, first=first)
    experiment_id = tracker.ensure_experiment()
    tracker.refresh_study_summary(study, {"storage": mask_url(config.storage_url)})
    print(f"study {config.study_name} ready in {mask_url(config.storage_url)} "
          f"({len(study.trials)} trials, {study.user_attrs.get('warm_start', {}).get('queued', 0)} queued to run "
          "first); "
          f"experiment '{config.experiment_name}' (id {experiment_id}) on {tracker.masked_uri}", flush=True)
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from search.storage import check_reachable as check_storage
    from search.study import load_study

    config = load_study_config(args)
    check_storage(config.storage_url, must_exist=True)
    import_keras_quietly()
    tracker = _tracker(config)
    study = load_study(config, heartbeat=False)
    _finish(config, tracker, study)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from search.registry import pull
    from search.tracking import MlflowTracker

    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: exists and is not a directory")
    tracker = MlflowTracker(args.tracking_uri, experiment_name="", read_only=True)
    tracker.check_reachable()
    out = pull(tracker, args.model, args.alias, out_dir)
    print(f"pulled models:/{args.model}@{args.alias} into {out}", flush=True)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    # Arguments are checked before Keras (seconds to import) or MLflow is touched, and a local
    # bundle never imports MLflow, Optuna or the search config at all.
    remote = args.model.startswith("models:/")
    if not remote and not Path(args.model).is_dir():
        raise UsageError(f"--model {args.model}: no such bundle directory (or give models:/NAME@ALIAS)")
    if args.texts:
        texts = list(args.texts)
    elif args.file:
        texts = read_text_lines(args.file)
    else:
        texts = [line.rstrip("\n") for line in sys.stdin]
    import tempfile

    import_keras_quietly()
    from models.ensemble import load_classifier

    with tempfile.TemporaryDirectory() as tmp:
        if remote:
            from search.registry import parse_model_uri, pull
            from search.tracking import MlflowTracker

            name, alias = parse_model_uri(args.model)
            tracker = MlflowTracker(args.tracking_uri, experiment_name="", read_only=True)
            tracker.check_reachable()
            directory = pull(tracker, name, alias, Path(tmp))
        else:
            directory = Path(args.model)
        classifier = load_classifier(directory)
        for prediction in classifier.predict(texts):
            print(f"{prediction.label}\t{prediction.probability:.4f}")
    return 0


def read_text_lines(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--file {path}: file not found")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--file {path}: undecodable bytes (not UTF-8) at byte {exc.start}") from None
    # Only \n (or \r\n) ends a text: str.splitlines would also split on U+2028 and friends.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def cmd_report(args: argparse.Namespace) -> int:
    from search.report import main as report_main

    return report_main(args)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from search.ui import run_dashboard

    return run_dashboard(args)


def cmd_ui(args: argparse.Namespace) -> int:
    from search.ui import run_mlflow_ui

    return run_mlflow_ui(args)


COMMANDS = {
    "run": cmd_run,
    "init": cmd_init,
    "worker": lambda a: cmd_run(a, worker_mode=True),
    "register": cmd_register,
    "pull": cmd_pull,
    "predict": cmd_predict,
    "report": cmd_report,
    "dashboard": cmd_dashboard,
    "ui": cmd_ui,
}


def import_keras_quietly() -> None:
    """Import Keras (and TensorFlow) with file descriptor 2 closed for the moment.

    TensorFlow writes its oneDNN notice from C++ before its logging is set up, so
    TF_CPP_MIN_LOG_LEVEL cannot silence it; the CLI's output stays one line per trial.
    Exceptions still propagate (and print) after stderr is restored.
    """
    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_libraries() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # oneDNN stays on (TensorFlow's default): 1.6-1.9x the training examples/s of oneDNN off at the
    # same accuracy (bench/results/throughput.json, runtime arms). Its import notice is muted by
    # import_keras_quietly (TF_CPP_MIN_LOG_LEVEL cannot reach it).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow prints "View run ... at: URL" lines for remote servers: one line per trial is ours.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("absl", "tensorflow", "mlflow", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    # MLflow suggests type hints on PythonModel.predict; the explicit signature is the contract.
    warnings.filterwarnings("ignore", message=".*type hints? .*predict", category=UserWarning)
    warnings.filterwarnings("ignore", message=".*ExperimentalWarning.*")
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    from data_pipeline.errors import DataError
    from search.errors import BundleError, ConfigError, FailingTrialsError, RegistryError, StorageError, TrackingError
    from search.urls import mask_text

    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, DataError, StorageError, TrackingError, RegistryError, UsageError, BundleError,
            FailingTrialsError, FileNotFoundError) as exc:
        message = mask_text(str(exc), getattr(args, "storage", None), getattr(args, "tracking_uri", None),
                            os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("SEARCH_STORAGE"))
        print(f"error: {message}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
