"""Serving benchmark (not a test): the registered champion behind `mlflow models serve`.

    python bench/serving.py [--config studies/demo.yaml] [--requests 200]   # -> bench/results/serving.json
    python bench/serving.py --config studies/amazon.yaml --tracking-uri sqlite:///.cache/bench/search-amazon/mlflow.db \
        --result serving_ensemble     # the search bench's champion (an ensemble of 8)

Needs a study with a champion (`make demo`). Starts MLflow's scoring server on
models:/<model>@champion outside this repository (no PYTHONPATH), then:
- agreement: 100 test texts through `python -m search predict` and through POST /invocations
  (the `inputs` form): labels equal and probabilities equal to 4 decimals;
- latency: single-text requests one after another, p50/p90/p99 in ms (client-side, loopback),
  and one request of 256 texts.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import ROOT, write_result


def post(port: int, body: dict) -> list[dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["predictions"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="studies/demo.yaml")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--tracking-uri", help="where the champion is registered (default: the config's)")
    parser.add_argument("--result", default="serving", help="bench/results/RESULT.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from search.config import load_config
    from search.tracking import resolve_tracking_uri

    config = load_config(ROOT / args.config)
    tracking = args.tracking_uri or resolve_tracking_uri(config.tracking.uri)
    if tracking.startswith("sqlite:///") and not tracking.startswith("sqlite:////"):
        tracking = "sqlite:///" + str(ROOT / tracking.removeprefix("sqlite:///"))
    model = f"models:/{config.model_name}@champion"
    from mlflow import MlflowClient

    version = MlflowClient(tracking).get_model_version_by_alias(config.model_name, "champion")
    members = len(version.tags["ensemble_trials"].split(",")) if "ensemble_trials" in version.tags else 1
    test_file = ROOT / (config.data.test_file or config.data.train_file)
    opener = gzip.open if test_file.suffix == ".gz" else open
    with opener(test_file, "rt", encoding="utf-8") as f:
        texts = [line.partition(" ")[2].strip() for _, line in zip(range(100), f, strict=False)]

    predicted = subprocess.run([sys.executable, "-m", "search", "predict", "--model", model, "--tracking-uri",
                                tracking, *texts], cwd=ROOT, capture_output=True, text=True, check=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split("\n")
    expected = [line.split("\t") for line in predicted if line]

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(MLFLOW_TRACKING_URI=tracking, PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    workdir = tempfile.mkdtemp(prefix="serve-")
    started = time.perf_counter()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", model,
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - started > 300:
                    raise SystemExit("mlflow models serve did not start") from None
                time.sleep(0.25)
        startup = time.perf_counter() - started
        served = post(port, {"inputs": texts})
        labels_equal = [r["label"] for r in served] == [e[0] for e in expected]
        probs_equal = [f"{r['probability']:.4f}" for r in served] == [e[1] for e in expected]
        post(port, {"inputs": texts[:1]})  # warm-up
        single = []
        for i in range(args.requests):
            t = time.perf_counter()
            post(port, {"inputs": [texts[i % len(texts)]]})
            single.append((time.perf_counter() - t) * 1000)
        batch = [texts[i % len(texts)] for i in range(256)]
        t = time.perf_counter()
        post(port, {"inputs": batch})
        batch_ms = (time.perf_counter() - t) * 1000
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    quantiles = statistics.quantiles(single, n=100)
    body = {
        "command": " ".join(["python", "bench/serving.py", *sys.argv[1:]]),
        "model": model, "version": version.version, "members": members,
        "server": "mlflow models serve --env-manager local (1 worker)",
        "agreement_texts": len(texts), "labels_equal": labels_equal, "probabilities_equal_4dp": probs_equal,
        "startup_s": round(startup, 2), "single_request_ms": {"p50": round(quantiles[49], 2),
                                                              "p90": round(quantiles[89], 2),
                                                              "p99": round(quantiles[98], 2)},
        "requests": args.requests, "batch_256_request_ms": round(batch_ms, 1),
    }
    write_result(args.result, body, merge=False)
    print(json.dumps(body, indent=1))
    return 0 if labels_equal and probs_equal else 1


if __name__ == "__main__":
    sys.exit(main())
