"""Build and run the real container stack, check it from the host (not a test: needs a Docker engine).

    python bench/compose_check.py [--target 6] [--workers 3]     # -> bench/results/compose.json

Uses a running Docker engine with Compose v2, or starts one with ../shared/tools/docker/engine
(installs it from Debian packages and builds stand-ins for python:3.11-slim and postgres:15,
because no container registry is reachable here). Then, from the host:

1. build the image; `up --scale worker=N` with a small target; kill -9 one worker mid-trial;
2. `init` ran once and exited 0; exactly the target of COMPLETE+PRUNED trials in PostgreSQL;
   no two sampled (not enqueued, not retried) trials share a configuration; the killed trial
   is FAIL with a reason, retried, and its MLflow run FAILED; the champion exists on the
   MLflow server (REST); `pull` + `predict` from the host classify raw text; optuna-dashboard
   answers /api/studies;
3. `down`, then `up` with a higher target resumes the same study; `stop worker` mid-trial
   re-queues that trial; a last `up` finishes exactly the new target;
4. `down -v` and, if this script started the engine, `engine stop`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import ROOT, write_result

ENGINE = ROOT.parent / "shared" / "tools" / "docker" / "engine"
PROJECT = "rnnsearch-check"


class CheckFailed(RuntimeError):
    pass


def sh(*cmd: str, check: bool = True, timeout: float = 900, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise CheckFailed(f"{' '.join(cmd)} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}")
    return proc.stdout


def engine_ready() -> bool:
    if not shutil.which("docker"):
        return False
    ok = subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    version = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True)
    return ok and version.returncode == 0 and version.stdout.strip().startswith("2")


def start_engine() -> bool:
    """Returns True when this script started the engine (and so must stop it)."""
    if engine_ready():
        return False
    if not ENGINE.exists():
        raise CheckFailed(f"no Docker engine with Compose v2 and no {ENGINE} to start one")
    out = sh(str(ENGINE), "start", timeout=1200)
    for line in out.splitlines():  # `export DOCKER_CONFIG=...`
        if line.startswith("export ") and "=" in line:
            key, value = line.removeprefix("export ").split("=", 1)
            os.environ[key] = value.strip("'\"")
    if not engine_ready():
        raise CheckFailed("engine start finished but `docker compose` v2 does not answer")
    return True


def engine_versions() -> dict[str, str]:
    server = sh("docker", "version", "--format", "{{.Server.Version}}", check=False).strip()
    if not server and shutil.which("dockerd"):  # engine already stopped: the installed daemon's version
        server = sh("dockerd", "--version", check=False).strip()
    return {"docker": server, "compose": sh("docker", "compose", "version", "--short", check=False).strip()}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    def __init__(self, env_file: Path, mlflow_port: int, dashboard_port: int, serve_port: int):
        self.env_file = env_file
        self.mlflow = f"http://127.0.0.1:{mlflow_port}"
        self.dashboard = f"http://127.0.0.1:{dashboard_port}"
        self.serve = f"http://127.0.0.1:{serve_port}"

    def compose(self, *args: str, check: bool = True, timeout: float = 900, **env: str) -> str:
        return sh("docker", "compose", "-p", PROJECT, "--env-file", str(self.env_file), *args,
                  check=check, timeout=timeout, env={**os.environ, **env})

    def sql(self, query: str) -> list[list[str]]:
        out = self.compose("exec", "-T", "postgres", "psql", "-U", "optuna", "-d", "optuna", "-tA", "-F", "\t",
                           "-c", query)
        return [line.split("\t") for line in out.splitlines() if line.strip()]

    def trials(self) -> list[dict[str, Any]]:
        rows = self.sql("select t.trial_id, t.number, t.state, s.study_name from trials t "
                        "join studies s using (study_id) order by t.number")
        trials = {int(r[0]): {"number": int(r[1]), "state": r[2], "study": r[3], "params": {}, "user": {},
                              "system": {}} for r in rows}
        # Rows of trials created after the first query (workers keep going) are skipped.
        for tid, name, value in self.sql("select trial_id, param_name, param_value from trial_params"):
            if int(tid) in trials:
                trials[int(tid)]["params"][name] = value
        for tid, key, value in self.sql("select trial_id, key, value_json from trial_user_attributes"):
            if int(tid) in trials:
                trials[int(tid)]["user"][key] = json.loads(value)
        for tid, key, value in self.sql("select trial_id, key, value_json from trial_system_attributes"):
            if int(tid) in trials:
                trials[int(tid)]["system"][key] = json.loads(value)
        return sorted(trials.values(), key=lambda t: t["number"])

    def finished(self) -> int:
        return sum(t["state"] in ("COMPLETE", "PRUNED") for t in self.trials())

    def rest(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.mlflow + path, timeout=10) as response:
            return json.loads(response.read())

    def invoke(self, texts: list[str]) -> list[dict[str, Any]]:
        request = urllib.request.Request(self.serve + "/invocations", data=json.dumps({"inputs": texts}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["predictions"]

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-a", "-q", service).split()


def wait_for(what: str, predicate, timeout: float, poll: float = 3.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (CheckFailed, OSError, ValueError) as exc:
            last_error = exc
        time.sleep(poll)
    detail = f" ({last_error})" if last_error else ""
    raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}{detail}")


def running_trial_of_worker(stack: Stack) -> tuple[str, int] | None:
    """A (container id, trial number) pair: a worker container in the middle of a trial."""
    hostnames = {sh("docker", "inspect", "--format", "{{.Config.Hostname}}", cid).strip(): cid
                 for cid in stack.containers("worker")}
    for trial in stack.trials():
        if trial["state"] == "RUNNING" and trial["user"].get("mlflow_run_id"):
            host = str(trial["user"].get("worker", "")).split(":")[0]
            if host in hostnames:
                return hostnames[host], trial["number"]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=int, default=6, help="finished trials of the first `up`")
    parser.add_argument("--more", type=int, default=2, help="trials added by the resumed `up`")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the stack and engine running")
    args = parser.parse_args()

    checks: dict[str, Any] = {}
    timings: dict[str, float] = {}
    notes: list[str] = []
    started_engine = False
    stack: Stack | None = None
    tmp = Path(tempfile.mkdtemp(prefix="compose-check-"))
    t0 = time.monotonic()

    def check(name: str, ok: bool, detail: Any) -> None:
        checks[name] = {"ok": bool(ok), "detail": detail}
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)

    try:
        t = time.monotonic()
        started_engine = start_engine()
        timings["engine_start_s"] = round(time.monotonic() - t, 1)
        env_file = tmp / ".env"
        mlflow_port, dashboard_port, serve_port = free_port(), free_port(), free_port()
        password = "pw/" + secrets.token_hex(6)  # a '/' in the password, as users write them
        env_file.write_text("\n".join([
            "POSTGRES_USER=optuna", f"POSTGRES_PASSWORD={password}", "POSTGRES_DB=optuna", "MLFLOW_DB=mlflow",
            "SEARCH_CONFIG=studies/demo.yaml", "SEARCH_STUDY=demo", f"SEARCH_TARGET_TRIALS={args.target}",
            "BIND_ADDRESS=127.0.0.1", f"MLFLOW_PORT={mlflow_port}", f"DASHBOARD_PORT={dashboard_port}",
            f"SERVE_PORT={serve_port}",
        ]) + "\n")
        stack = Stack(env_file, mlflow_port, dashboard_port, serve_port)
        stack.compose("--profile", "serve", "down", "-v", "--remove-orphans", check=False)

        t = time.monotonic()
        stack.compose("build", timeout=1800)
        timings["build_s"] = round(time.monotonic() - t, 1)

        up = time.monotonic()
        stack.compose("up", "-d", "--scale", f"worker={args.workers}", timeout=600)
        timings["up_command_s"] = round(time.monotonic() - up, 1)
        wait_for("a first finished trial", lambda: stack.finished() >= 1, 900)
        timings["up_to_first_trial_s"] = round(time.monotonic() - up, 1)

        # kill -9 a worker in the middle of a trial (not the last one: others must finish it).
        victim = wait_for("a worker in the middle of a trial", lambda: running_trial_of_worker(stack), 600, 1.0)
        container, killed_trial = victim
        sh("docker", "kill", "--signal", "KILL", container)
        print(f"killed worker container {container[:12]} during trial {killed_trial}", flush=True)

        wait_for(f"{args.target} finished trials", lambda: stack.finished() >= args.target, 1800)
        champion = wait_for("the champion alias on the MLflow server", lambda: stack.rest(
            "/api/2.0/mlflow/registered-models/alias?name=demo&alias=champion").get("model_version"), 600)
        timings["up_to_champion_s"] = round(time.monotonic() - up, 1)
        # Workers exit once the study holds the target (the killed one stays down).
        wait_for("workers to exit", lambda: all(
            sh("docker", "inspect", "--format", "{{.State.Running}}", c).strip() == "false"
            for c in stack.containers("worker")), 600)

        trials = stack.trials()
        finished = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED")]
        check("finished_trials_equal_target", len(finished) == args.target,
              f"{len(finished)} COMPLETE+PRUNED, target {args.target}")
        sampled = [t for t in trials if "fixed_params" not in t["system"] and "failed_trial" not in t["system"]
                   and "requeued_from" not in t["user"]]
        configs = [json.dumps(t["params"], sort_keys=True) for t in sampled]
        check("distinct_configurations", len(set(configs)) == len(configs),
              f"{len(set(configs))} distinct of {len(configs)} sampled trials")
        init_ids = stack.containers("init")
        init_state = [json.loads(sh("docker", "inspect", "--format", "{{json .State}}", c)) for c in init_ids]
        restarts = [int(sh("docker", "inspect", "--format", "{{.RestartCount}}", c)) for c in init_ids]
        check("init_ran_once_exit_0", len(init_ids) == 1 and init_state[0]["ExitCode"] == 0 and restarts == [0],
              f"{len(init_ids)} init container(s), exit {[s['ExitCode'] for s in init_state]}, restarts {restarts}")
        killed = next(t for t in trials if t["number"] == killed_trial)
        retries = [t["number"] for t in trials if t["system"].get("failed_trial") == killed_trial]
        run = stack.rest(f"/api/2.0/mlflow/runs/get?run_id={killed['user']['mlflow_run_id']}")["run"]
        run_tags = {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}
        check("killed_trial_failed_with_reason", killed["state"] == "FAIL" and "fail_reason" in killed["user"],
              f"trial {killed_trial}: {killed['state']}, reason {killed['user'].get('fail_reason')!r}")
        check("killed_trial_retried", bool(retries), f"retried as trial(s) {retries}")
        check("killed_trial_mlflow_run_failed", run["info"]["status"] == "FAILED",
              f"run {run['info']['run_id'][:8]}: {run['info']['status']}, "
              f"tag trial_state {run_tags.get('trial_state')}")
        experiment = stack.rest("/api/2.0/mlflow/experiments/get-by-name?experiment_name=demo")
        experiment_id = experiment["experiment"]["experiment_id"]
        request = urllib.request.Request(stack.mlflow + "/api/2.0/mlflow/runs/search", method="POST",
                                         data=json.dumps({"experiment_ids": [experiment_id],
                                                          "max_results": 200}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            runs = json.loads(response.read()).get("runs", [])
        left_running = [r["info"]["run_name"] for r in runs if r["info"]["status"] == "RUNNING"]
        check("no_mlflow_run_left_running", not left_running, f"{len(runs)} runs, RUNNING: {left_running}")
        versions = stack.rest("/api/2.0/mlflow/model-versions/search?filter=name%3D%27demo%27")["model_versions"]
        version_runs = [v["run_id"] for v in versions]
        check("champion_on_server", bool(champion) and len(set(version_runs)) == len(version_runs),
              f"version {champion['version']} from run {champion['run_id'][:8]}; {len(versions)} version(s), "
              f"one per run: {len(set(version_runs)) == len(version_runs)}")

        pulled = tmp / "pulled"
        python = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() \
            else sys.executable
        host_env = {**os.environ, "PYTHONPATH": str(ROOT)}
        sh(python, "-m", "search", "pull", "--model", "demo", "--tracking-uri", stack.mlflow, "--out", str(pulled),
           env=host_env)
        predictions = sh(python, "-m", "search", "predict", "--model", str(pulled),
                         "Great product, works perfectly and arrived early", "Broke after one day, waste of money",
                         env=host_env).splitlines()
        labels = [line.split("\t")[0] for line in predictions]
        check("pull_and_predict_from_host", len(labels) == 2 and all(labels),
              f"{predictions}")
        # The optional `serve` profile: MLflow's scoring server on the champion, raw text in.
        t = time.monotonic()
        stack.compose("--profile", "serve", "up", "-d", "serve", timeout=600)
        served = wait_for("the serve profile to answer", lambda: stack.invoke(
            ["Great product, works perfectly and arrived early", "Broke after one day, waste of money"]), 300, 2.0)
        timings["serve_up_to_answer_s"] = round(time.monotonic() - t, 1)
        check("serve_profile_matches_predict", [r["label"] for r in served] == labels
              and [f"{r['probability']:.4f}" for r in served] == [line.split("\t")[1] for line in predictions],
              f"{served}")
        stack.compose("--profile", "serve", "stop", "serve", timeout=120)
        with urllib.request.urlopen(stack.dashboard + "/api/studies", timeout=10) as response:
            body = json.loads(response.read())
        names = [s.get("study_name") for s in body.get("study_summaries", [])]
        check("dashboard_api_studies", "demo" in names, f"studies {names}")

        t = time.monotonic()
        stack.compose("down", timeout=600)
        timings["down_s"] = round(time.monotonic() - t, 1)

        # Resume with a higher target; stop the workers mid-trial; finish with a last `up`.
        new_target = args.target + args.more
        stack.compose("up", "-d", "--scale", f"worker={args.workers}", timeout=600,
                      SEARCH_TARGET_TRIALS=str(new_target))
        victim = wait_for("a worker in the middle of a trial after resume", lambda: running_trial_of_worker(stack),
                          900, 1.0)
        t = time.monotonic()
        stack.compose("stop", "worker", timeout=300)
        timings["stop_workers_s"] = round(time.monotonic() - t, 1)
        trials = stack.trials()
        stopped = next(t for t in trials if t["number"] == victim[1])
        requeued = [t["number"] for t in trials if t["user"].get("requeued_from") == victim[1]]
        check("stop_worker_requeues_trial",
              stopped["state"] == "FAIL" and stopped["user"].get("fail_reason") == "interrupted" and bool(requeued),
              f"trial {victim[1]}: {stopped['state']} {stopped['user'].get('fail_reason')!r}, "
              f"re-queued as {requeued}")
        stack.compose("up", "-d", "--scale", f"worker={args.workers}", timeout=600,
                      SEARCH_TARGET_TRIALS=str(new_target))
        wait_for("workers to finish the resumed target", lambda: all(
            sh("docker", "inspect", "--format", "{{.State.Running}}", c).strip() == "false"
            for c in stack.containers("worker")), 1800)
        trials = stack.trials()
        studies = {t["study"] for t in trials}
        finished = sum(t["state"] in ("COMPLETE", "PRUNED") for t in trials)
        check("resume_same_study_exact_target", studies == {"demo"} and finished == new_target,
              f"studies {sorted(studies)}, {finished} finished, target {new_target}, {len(trials)} trials in all")
        dashboard_stop = time.monotonic()
        stack.compose("stop", "dashboard", timeout=120)
        timings["stop_dashboard_s"] = round(time.monotonic() - dashboard_stop, 1)
        check("dashboard_stops_on_sigterm", timings["stop_dashboard_s"] < 8,
              f"{timings['stop_dashboard_s']} s (Docker's kill after 10 s would mean SIGTERM was ignored)")
    except Exception as exc:  # record what broke, then tear down
        check("completed_without_error", False, f"{type(exc).__name__}: {exc}"[:2000])
        if stack is not None:
            logs = stack.compose("logs", "--no-color", "--tail", "40", check=False)
            (tmp / "compose.log").write_text(logs)
            notes.append(f"last logs in {tmp / 'compose.log'}")
    finally:
        if stack is not None and not args.keep:
            t = time.monotonic()
            stack.compose("--profile", "serve", "down", "-v", "--remove-orphans", check=False, timeout=600)
            timings["down_v_s"] = round(time.monotonic() - t, 1)
        engine = engine_versions()  # while the engine still answers
        if started_engine and not args.keep:
            sh(str(ENGINE), "stop", check=False, timeout=300)
    timings["total_s"] = round(time.monotonic() - t0, 1)
    passed = bool(checks) and all(c["ok"] for c in checks.values())
    write_result("compose", {
        "command": f"python bench/compose_check.py --target {args.target} --more {args.more} "
                   f"--workers {args.workers}",
        "passed": passed, "checks": checks, "timings_s": timings, "workers": args.workers,
        "target": args.target, "resumed_target": args.target + args.more, "started_engine": started_engine,
        "engine": {**engine, "images": "stand-ins from ../shared/tools/docker (no registry reachable)"},
        "notes": notes,
    }, merge=False)
    print(f"compose check {'passed' if passed else 'FAILED'} in {timings['total_s']} s", flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
