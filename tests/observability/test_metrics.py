"""Prometheus metrics across worker processes.

Every recording happens in child processes started with ``spawn`` (fresh interpreters, as
real workers are), each pointed at a directory of the test's own; the test process only
renders. So nothing here leaves metrics state in the test process.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nflow.observability import mark_worker_dead, render_metrics, setup_multiprocess_dir

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
SPAWN = multiprocessing.get_context("spawn")

# name of a sample -> {labels as sorted tuple: value}
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


# ------------------------------------------------------------------------------------------
# What the workers do (module level, so spawned children can import them)


def record_traffic(
    path: str, ok: int, failed: int, ready: Event | None, release: Event | None
) -> None:
    os.environ[ENV_DIR] = path
    from nflow.observability import Metrics

    metrics = Metrics()
    for _ in range(ok):
        metrics.request_started()
        metrics.request_finished("shop", "/orders", 200, 0.003)
        metrics.workflow_finished("shop", True)
        metrics.node_finished("shop", "js", 0.0004)
        metrics.node_finished("shop", "js", 0.002)
    for _ in range(failed):
        metrics.request_started()
        metrics.request_finished("shop", "/orders", 500, 0.2)
        metrics.workflow_finished("shop", False)
    metrics.request_started()
    metrics.request_finished("", "", 404, 0.0001)  # no starter matched
    metrics.request_started()  # one request still in flight
    metrics.limit_hit("time")
    metrics.rate_limited()
    metrics.security_event("eval")
    metrics.process_started()
    metrics.set_processes(7)  # only the last value counts
    metrics.set_processes(2)
    metrics.set_db_pool(3, 1, 2)
    metrics.set_js_runtimes({"idle": 3, "busy": 1})
    if ready is None or release is None:
        return  # nothing flushed by hand: the exit must do it
    metrics.flush()
    ready.set()
    release.wait(120)


def record_then_fork(path: str) -> None:
    """A parent that records, then forks a worker that records too (granian forks)."""
    os.environ[ENV_DIR] = path
    from nflow.observability import get_metrics

    metrics = get_metrics()
    metrics.request_started()
    metrics.request_finished("shop", "/a", 200, 0.01)  # not flushed before the fork
    child = multiprocessing.get_context("fork").Process(target=record_in_forked_child)
    child.start()
    child.join(120)
    metrics.request_finished("shop", "/a", 200, 0.01)


def record_in_forked_child() -> None:
    from nflow.observability import get_metrics

    metrics = get_metrics()
    for _ in range(3):
        metrics.request_finished("shop", "/a", 201, 0.02)


def record_many_labels(path: str) -> None:
    os.environ[ENV_DIR] = path
    from nflow.observability import Metrics, metrics

    metrics.MAX_LABEL_SETS = 3
    recorder = Metrics()
    for name in ["time", "memory", "output", "time", "steps", "calls"]:
        recorder.limit_hit(name)
    recorder.flush()


def record_from_threads(path: str, threads: int, runs: int) -> None:
    """Threads queue requests and runs of one and three nodes while others fold and flush."""
    import threading
    from types import SimpleNamespace

    os.environ[ENV_DIR] = path
    from nflow.observability import Metrics

    metrics = Metrics()
    one = [SimpleNamespace(type="js", duration_ms=0.3)]
    three = [
        SimpleNamespace(type="js", duration_ms=0.3),
        SimpleNamespace(type="mail", duration_ms=30.0),
        SimpleNamespace(type="js", duration_ms=3.0),
    ]

    def traffic() -> None:
        for i in range(runs):
            metrics.request_started()
            metrics.run_finished("shop", i % 5 != 0, three if i % 2 else one)
            metrics.request_finished("shop", "/orders", 200 if i % 5 else 500, 0.003)

    def flushing(stop: threading.Event) -> None:
        while not stop.is_set():
            metrics.flush()

    stop = threading.Event()
    flusher = threading.Thread(target=flushing, args=(stop,))
    flusher.start()
    workers = [threading.Thread(target=traffic) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    flusher.join()
    metrics.flush()


def record_edge_durations(path: str) -> None:
    """Durations on a bucket bound, past the last one, negative and NaN."""
    os.environ[ENV_DIR] = path
    from types import SimpleNamespace

    from nflow.observability import Metrics

    metrics = Metrics()
    for seconds in (0.005, 0.005, 31.0, -2.0, float("nan"), 0.0007):
        metrics.request_finished("shop", "/edge", 200, seconds)
    metrics.run_finished(
        "shop",
        True,
        [SimpleNamespace(type="js", duration_ms=ms) for ms in (0.1, 0.1001, -1.0, 6000.0)],
    )
    metrics.flush()


# ------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture
def metrics_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # setup_multiprocess_dir exports the directory; monkeypatch puts the variable back.
    monkeypatch.setenv(ENV_DIR, "unset")
    monkeypatch.delenv(ENV_DIR)
    yield setup_multiprocess_dir(tmp_path / "metrics")


def scrape(path: str) -> tuple[Samples, dict[str, tuple[str, str]], str]:
    """Rendered samples, {family: (type, help)} and the content type."""
    body, content_type = render_metrics(path)
    samples: Samples = {}
    families: dict[str, tuple[str, str]] = {}
    for family in text_string_to_metric_families(body.decode()):
        families[family.name] = (family.type, family.documentation)
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples, families, content_type


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def run_child(target: Callable[..., None], *args: Any) -> int:
    child = SPAWN.Process(target=target, args=args)
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert child.pid is not None
    return child.pid


# ------------------------------------------------------------------------------------------
# Tests


def test_two_workers_add_up(metrics_dir: str) -> None:
    ready = [SPAWN.Event(), SPAWN.Event()]
    release = SPAWN.Event()
    workers = [
        SPAWN.Process(target=record_traffic, args=(metrics_dir, 7, 2, ready[0], release)),
        SPAWN.Process(target=record_traffic, args=(metrics_dir, 5, 1, ready[1], release)),
    ]
    for worker in workers:
        worker.start()
    try:
        assert all(event.wait(120) for event in ready)
        samples, families, content_type = scrape(metrics_dir)
    finally:
        release.set()
        for worker in workers:
            worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert content_type.startswith("text/plain; version=0.0.4")

    # The Go runtime's names, now holding real values: sums over both workers.
    assert value(samples, "nflow_up") == 1
    assert value(samples, "nflow_uptime_seconds") >= 0
    assert value(samples, "nflow_requests_total") == 7 + 2 + 5 + 1 + 2  # + one 404 each
    assert value(samples, "nflow_requests_errors_total") == 2 + 1 + 2
    assert value(samples, "nflow_requests_active") == 2  # one in flight in each worker
    assert value(samples, "nflow_workflows_total") == 15
    assert value(samples, "nflow_workflows_errors_total") == 3
    assert value(samples, "nflow_workflow_runs_total", app="shop", result="ok") == 12
    assert value(samples, "nflow_workflow_runs_total", app="shop", result="error") == 3
    assert value(samples, "nflow_processes_active") == 4
    assert value(samples, "nflow_processes_total") == 2
    assert value(samples, "nflow_db_connections_open") == 6
    assert value(samples, "nflow_db_connections_in_use") == 2
    assert value(samples, "nflow_db_connections_idle") == 4
    assert value(samples, "nflow_limit_hits_total", limit="time") == 2
    assert value(samples, "nflow_ratelimit_rejections_total") == 2
    assert value(samples, "nflow_security_events_total", rule="eval") == 2
    assert value(samples, "nflow_js_runtimes", state="idle") == 6
    assert value(samples, "nflow_js_runtimes", state="busy") == 2
    assert value(samples, "nflow_workers") == 2
    assert value(samples, "nflow_memory_rss_bytes") > 0
    assert value(samples, "nflow_memory_worker_rss_max_bytes") > 0

    # Histograms: counts exact, observations in the right buckets.
    ok = {"app": "shop", "starter": "/orders", "status_class": "2xx"}
    failed = {**ok, "status_class": "5xx"}
    unmatched = {"app": "", "starter": "", "status_class": "4xx"}
    request = "nflow_request_duration_seconds"
    assert value(samples, f"{request}_count", **ok) == 12
    assert value(samples, f"{request}_sum", **ok) == pytest.approx(12 * 0.003)
    assert value(samples, f"{request}_bucket", **ok, le="0.0025") == 0
    assert value(samples, f"{request}_bucket", **ok, le="0.005") == 12
    assert value(samples, f"{request}_bucket", **ok, le="+Inf") == 12
    assert value(samples, f"{request}_count", **failed) == 3
    assert value(samples, f"{request}_bucket", **failed, le="0.1") == 0
    assert value(samples, f"{request}_bucket", **failed, le="0.25") == 3
    assert value(samples, f"{request}_count", **unmatched) == 2
    node = "nflow_node_duration_seconds"
    assert value(samples, f"{node}_count", app="shop", node_type="js") == 24
    assert value(samples, f"{node}_bucket", app="shop", node_type="js", le="0.0005") == 12
    assert value(samples, f"{node}_bucket", app="shop", node_type="js", le="0.0025") == 24

    # Every family is described, with the Prometheus type it claims.
    assert families["nflow_requests"] == (
        "counter",
        "HTTP requests served (except the health and metrics endpoints).",
    )
    assert families["nflow_requests_active"][0] == "gauge"
    assert families["nflow_request_duration_seconds"][0] == "histogram"
    assert all(help_text for _, help_text in families.values())

    # Once the workers are gone their gauges go too; counters and histograms stay.
    after, _, _ = scrape(metrics_dir)
    assert value(after, "nflow_requests_total") == 17
    assert value(after, f"{request}_count", **ok) == 12
    assert "nflow_workers" not in after
    assert "nflow_requests_active" not in after
    assert "nflow_db_connections_open" not in after


def test_events_queued_from_many_threads_while_folding_all_count(metrics_dir: str) -> None:
    threads, runs = 4, 3000
    run_child(record_from_threads, metrics_dir, threads, runs)
    samples, _, _ = scrape(metrics_dir)
    total = threads * runs
    failed = threads * (runs // 5)
    assert value(samples, "nflow_requests_total") == total
    assert value(samples, "nflow_requests_errors_total") == failed
    assert value(samples, "nflow_workflows_total") == total
    assert value(samples, "nflow_workflows_errors_total") == failed
    assert value(samples, "nflow_processes_total") == total
    request = "nflow_request_duration_seconds"
    assert value(
        samples, f"{request}_count", app="shop", starter="/orders", status_class="2xx"
    ) == (total - failed)
    # Half the runs had one js node, half had js, mail, js.
    node = "nflow_node_duration_seconds"
    assert value(samples, f"{node}_count", app="shop", node_type="js") == total // 2 * 3
    assert value(samples, f"{node}_bucket", app="shop", node_type="js", le="0.0005") == total
    assert value(samples, f"{node}_count", app="shop", node_type="mail") == total // 2
    assert value(samples, f"{node}_bucket", app="shop", node_type="mail", le="0.025") == 0
    assert value(samples, f"{node}_sum", app="shop", node_type="mail") == pytest.approx(
        total // 2 * 0.03
    )


def test_a_worker_that_exits_without_flushing_keeps_its_counts(metrics_dir: str) -> None:
    run_child(record_traffic, metrics_dir, 4, 1, None, None)
    samples, _, _ = scrape(metrics_dir)
    assert value(samples, "nflow_requests_total") == 6
    assert value(samples, "nflow_requests_errors_total") == 2
    assert value(samples, "nflow_security_events_total", rule="eval") == 1


def test_forked_worker_counts_once(metrics_dir: str) -> None:
    run_child(record_then_fork, metrics_dir)
    samples, _, _ = scrape(metrics_dir)
    # The parent's request recorded before the fork is counted by the parent only.
    assert value(samples, "nflow_requests_total") == 2 + 3
    request = "nflow_request_duration_seconds_count"
    assert value(samples, request, app="shop", starter="/a", status_class="2xx") == 5


def test_label_sets_are_capped(metrics_dir: str) -> None:
    run_child(record_many_labels, metrics_dir)
    samples, _, _ = scrape(metrics_dir)
    assert samples["nflow_limit_hits_total"] == {
        (("limit", "time"),): 2,
        (("limit", "memory"),): 1,
        (("limit", "output"),): 1,
        (("limit", "_other"),): 2,
    }


def test_dead_worker_gauges_are_dropped(metrics_dir: str) -> None:
    pid = run_child(record_traffic, metrics_dir, 1, 0, None, None)
    live = glob.glob(os.path.join(metrics_dir, f"gauge_live*_{pid}.db"))
    assert live
    mark_worker_dead(pid, metrics_dir)
    assert not glob.glob(os.path.join(metrics_dir, f"gauge_live*_{pid}.db"))
    assert glob.glob(os.path.join(metrics_dir, f"counter_{pid}.db"))
    samples, _, _ = scrape(metrics_dir)
    assert value(samples, "nflow_requests_total") == 2


def test_setup_empties_the_directory_of_earlier_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_DIR, "unset")
    directory = tmp_path / "metrics"
    first = setup_multiprocess_dir(directory)
    assert first == str(directory)
    assert os.environ[ENV_DIR] == first
    run_child(record_traffic, first, 3, 0, None, None)
    (directory / "notes.txt").write_text("not ours")
    again = setup_multiprocess_dir(directory)
    assert again == first
    assert not glob.glob(os.path.join(again, "*.db"))
    assert (directory / "notes.txt").exists()
    samples, _, _ = scrape(again)
    assert "nflow_requests_total" not in samples
    assert value(samples, "nflow_up") == 1


def test_fresh_directory_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DIR, "unset")
    from nflow.observability import remove_multiprocess_dir

    made = setup_multiprocess_dir()
    try:
        assert os.path.isdir(made)
        assert os.environ[ENV_DIR] == made
    finally:
        remove_multiprocess_dir(made)
    assert not os.path.exists(made)


def test_durations_on_a_bound_past_the_last_or_invalid_land_where_prometheus_puts_them(
    metrics_dir: str,
) -> None:
    run_child(record_edge_durations, metrics_dir)
    samples, _, _ = scrape(metrics_dir)
    edge = {"app": "shop", "starter": "/edge", "status_class": "2xx"}
    request = "nflow_request_duration_seconds"
    assert value(samples, f"{request}_count", **edge) == 6
    # Negative and NaN count as 0 s; "le" includes the bound itself.
    assert value(samples, f"{request}_bucket", **edge, le="0.0005") == 2
    assert value(samples, f"{request}_bucket", **edge, le="0.001") == 3
    assert value(samples, f"{request}_bucket", **edge, le="0.005") == 5
    assert value(samples, f"{request}_bucket", **edge, le="30.0") == 5
    assert value(samples, f"{request}_bucket", **edge, le="+Inf") == 6
    assert value(samples, f"{request}_sum", **edge) == pytest.approx(0.01 + 31.0 + 0.0007)
    node = "nflow_node_duration_seconds"
    js = {"app": "shop", "node_type": "js"}
    assert value(samples, f"{node}_bucket", **js, le="0.0001") == 2  # 0.1 ms, and -1 ms as 0
    assert value(samples, f"{node}_bucket", **js, le="0.00025") == 3
    assert value(samples, f"{node}_bucket", **js, le="5.0") == 3
    assert value(samples, f"{node}_bucket", **js, le="+Inf") == 4
    assert value(samples, f"{node}_sum", **js) == pytest.approx((0.1 + 0.1001 + 6000.0) / 1000)
