"""Turn bench results into the console table, results.md and the throughput chart."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

LATENCY_P50_MS = 5.0
SCHEDULE_CALL_P50_MS = 2.0
SCHEDULE_MANY_PER_S = 5000
LATENCY_P99_MS = 25.0
SCALE_BUDGET_MS = 300.0


def _get(results: dict, *keys: str) -> Any:
    value: Any = results
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


THROUGHPUT = (
    ("PostgreSQL ceiling: checkpoint transaction, psycopg, no Django", ("ceiling", "tps"), "transactions/s"),
    ("raw RQ SimpleWorker, no-op jobs", ("rq", "noop", "jobs_per_s"), "jobs/s"),
    ("raw RQ plus one transaction (the checkpoint)", ("rq", "checkpoint", "jobs_per_s"), "jobs/s"),
    ("envoy_worker, 10-state no-op flow", ("envoy", "ten", "transitions_per_s"), "transitions/s"),
    ("envoy_worker, 10-state no-op flow", ("envoy", "ten", "jobs_per_s"), "jobs/s"),
    ("envoy_worker, 1-state no-op flow", ("envoy", "one", "jobs_per_s"), "jobs/s"),
    ("envoy_worker, 1-state, CONN_MAX_AGE=0 (a new connection per job)", ("envoy", "one_conn0", "jobs_per_s"),
     "jobs/s"),
    ("pgbench: checkpoint transaction (BEGIN, UPDATE, INSERT, END), prepared",
     ("peers", "pgbench", "transaction", "tps"), "transactions/s"),
    ("pgbench: the same rows as one statement (envoy's hot path)", ("peers", "pgbench", "one_statement", "tps"),
     "transactions/s"),
    ("LangGraph + PostgresSaver, durability sync, 10-node graph, one process", ("peers", "langgraph", "steps_per_s"),
     "steps/s"),
    ("DBOS, 10-step workflow, one process", ("peers", "dbos", "steps_per_s"), "steps/s"),
)


def throughput_rows(results: dict) -> list[tuple[str, Any, Any, str]]:
    """(label, value at 1, value at 2, unit) for each throughput measurement (medians of the rounds)."""
    return [(label, *(_get(results, *path[:-1], n, path[-1]) for n in ("1", "2")), unit)
            for label, path, unit in THROUGHPUT]


def round_values(results: dict, path: tuple[str, ...], n: str) -> str:
    values = _get(results, *path[:-1], n, path[-1] + "_rounds")
    return ", ".join(_fmt(v) for v in values) if values else "-"


RATIOS = (
    ("envoy 10-state transitions/s / ceiling (same N)", ("envoy", "ten", "transitions_per_s"), ("ceiling", "tps")),
    ("envoy 1-state jobs/s / RQ plus one transaction", ("envoy", "one", "jobs_per_s"),
     ("rq", "checkpoint", "jobs_per_s")),
    ("envoy 1-state jobs/s / raw RQ no-op", ("envoy", "one", "jobs_per_s"), ("rq", "noop", "jobs_per_s")),
    ("RQ plus one transaction / ceiling", ("rq", "checkpoint", "jobs_per_s"), ("ceiling", "tps")),
    ("envoy 10-state transitions/s / pgbench checkpoint transaction (same N)", ("envoy", "ten", "transitions_per_s"),
     ("peers", "pgbench", "transaction", "tps")),
    ("envoy 10-state transitions/s / LangGraph steps/s", ("envoy", "ten", "transitions_per_s"),
     ("peers", "langgraph", "steps_per_s")),
    ("envoy 10-state transitions/s / DBOS steps/s", ("envoy", "ten", "transitions_per_s"),
     ("peers", "dbos", "steps_per_s")),
)


def paired_ratio(results: dict, top: tuple[str, ...], bottom: tuple[str, ...], n: str) -> tuple[Any, Any]:
    """(ratio of the medians, median of the per-round ratios).

    Rounds are interleaved, so a round's two numbers were measured minutes
    apart under the same background load: the per-round ratio is the
    steadier estimate on a shared machine.
    """
    ratio = _ratio(_get(results, *top[:-1], n, top[-1]), _get(results, *bottom[:-1], n, bottom[-1]))
    tops = _get(results, *top[:-1], n, top[-1] + "_rounds") or []
    bottoms = _get(results, *bottom[:-1], n, bottom[-1] + "_rounds") or []
    per_round = [t / b for t, b in zip(tops, bottoms, strict=False) if b]
    return ratio, (sorted(per_round)[len(per_round) // 2] if per_round else None)


def ratio_rows(results: dict) -> list[tuple[str, Any, Any, Any, Any]]:
    """(label, ratio N=1, per-round N=1, ratio N=2, per-round N=2)."""
    rows = []
    for label, top, bottom in RATIOS:
        one = paired_ratio(results, top, bottom, "1")
        two = paired_ratio(results, top, bottom, "2")
        rows.append((label, one[0], one[1], two[0], two[1]))
    return rows


def targets(results: dict) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each target of the issue."""
    rows = []

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "MISSED")

    def both(value: tuple[Any, Any], floor: float) -> str:
        verdicts = {v >= floor for v in value if v is not None}
        if not verdicts:
            return "n/a"
        return "met" if verdicts == {True} else ("MISSED" if verdicts == {False} else "borderline")

    def measured(value: tuple[Any, Any], top: Any, bottom: Any) -> str:
        if value[0] is None:
            return "-"
        text = f"{_fmt(top)} / {_fmt(bottom)} = {value[0]:.2f}"
        return text + (f"; median of per-round ratios {value[1]:.2f}" if value[1] is not None else "")

    # The ceiling is pgbench's when the peers ran (--peers), else the Python client's.
    pgbench = ("peers", "pgbench", "transaction", "tps")
    ceiling, name = (pgbench, "pgbench's") if _get(results, *pgbench[:-1], "2", "tps") else (("ceiling", "tps"), "the")
    ten = paired_ratio(results, ("envoy", "ten", "transitions_per_s"), ceiling, "2")
    rows.append((f"10-state flow, 2 workers >= 0.5 x {name} 2-client checkpoint ceiling",
                 measured(ten, _get(results, "envoy", "ten", "2", "transitions_per_s"),
                          _get(results, *ceiling[:-1], "2", ceiling[-1])),
                 both(ten, 0.5)))
    langgraph = ("peers", "langgraph", "steps_per_s")
    if _get(results, *langgraph[:-1], "1", "steps_per_s"):
        vs = paired_ratio(results, ("envoy", "ten", "transitions_per_s"), langgraph, "1")
        rows.append(("10-state flow, 1 worker >= 3 x LangGraph + PostgresSaver (sync), one process",
                     measured(vs, _get(results, "envoy", "ten", "1", "transitions_per_s"),
                              _get(results, *langgraph[:-1], "1", "steps_per_s")),
                     both(vs, 3.0)))
    else:
        rows.append(("10-state flow, 1 worker >= 3 x LangGraph + PostgresSaver (sync), one process",
                     "- (run with --peers)", "n/a"))
    for n in ("1", "2"):
        one = paired_ratio(results, ("envoy", "one", "jobs_per_s"), ("rq", "checkpoint", "jobs_per_s"), n)
        rows.append((f"1-state jobs/s >= 0.8 x RQ plus one transaction ({n} worker{'s' if n != '1' else ''})",
                     measured(one, _get(results, "envoy", "one", n, "jobs_per_s"),
                              _get(results, "rq", "checkpoint", n, "jobs_per_s")),
                     both(one, 0.8)))
    # From one process, back to back (the envoy phase's 10-state runs schedule that way), and one call
    # every latency gap with idle workers, where each round trip also waits for an idle CPU to wake.
    loop = [run.get("schedule_call_p50_ms") for run in (_get(results, "envoy", "ten") or {}).values()]
    loop = [p50 for p50 in loop if p50]
    rows.append((f"schedule() call p50 < {SCHEDULE_CALL_P50_MS:g} ms, back to back from one process",
                 f"median p50 {statistics.median(loop)} ms over {len(loop)} runs" if loop else "-",
                 verdict(statistics.median(loop) < SCHEDULE_CALL_P50_MS) if loop else "n/a"))
    call = _get(results, "latency", "schedule_call")
    rows.append((f"schedule() call p50 < {SCHEDULE_CALL_P50_MS:g} ms, one call at a time, idle workers",
                 f"p50 {call['p50_ms']} ms" if call else "-",
                 verdict(call["p50_ms"] < SCHEDULE_CALL_P50_MS) if call else "n/a"))
    batch = [run.get("schedule_many_jobs_per_s") for run in (_get(results, "envoy", "one") or {}).values()]
    batch = [rate for rate in batch if rate]
    rows.append((f"schedule_many() >= {SCHEDULE_MANY_PER_S:,} jobs/s (1,000 per call)",
                 f"median {_fmt(statistics.median(batch))} jobs/s over {len(batch)} runs" if batch else "-",
                 verdict(statistics.median(batch) >= SCHEDULE_MANY_PER_S) if batch else "n/a"))
    for key, label in (("schedule_to_start", "schedule() to start"),
                       ("reply_to_resume", "reply_to_escalation() to resume"),
                       ("child_to_parent", "child finishes to parent resumes")):
        lat = _get(results, "latency", key)
        if lat:
            ok = lat["p50_ms"] < LATENCY_P50_MS and lat["p99_ms"] < LATENCY_P99_MS
            rows.append((f"{label}: p50 < 5 ms, p99 < 25 ms", f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms",
                         verdict(ok)))
        else:
            rows.append((f"{label}: p50 < 5 ms, p99 < 25 ms", "-", "n/a"))
    scale = _get(results, "scale")
    if scale and scale.get("shapes"):
        slow = [s for s in scale["shapes"] if s.get("budget") and s["median_ms"] >= SCALE_BUDGET_MS]
        seq = [s for s in scale["shapes"] if s.get("budget") and s.get("seq_scans")]
        budgeted = [s for s in scale["shapes"] if s.get("budget")]
        worst = max(budgeted, key=lambda s: s["median_ms"]) if budgeted else None
        measured = (f"{len(budgeted)} shapes at {scale['jobs']:,} jobs; "
                    f"slowest {worst['name']} {worst['median_ms']} ms; "
                    f"{len(slow)} over budget, {len(seq)} with a Seq Scan on a big table") if worst else "-"
        rows.append(("admin pages and sweep < 300 ms at 1,000,000 jobs, using indexes", measured,
                     verdict(not slow and not seq)
                     + ("" if scale["jobs"] >= 1_000_000 else f" (at {scale['jobs']:,} jobs only)")))
    else:
        rows.append(("admin pages and sweep < 300 ms at 1,000,000 jobs, using indexes", "-", "n/a"))
    purge = _get(results, "retention")
    target = "purge under load: no row lock or sweep waits 1 s or more"
    if purge:
        worst = max(purge.get("row_lock_max_ms") or 0, purge.get("sweep_max_ms") or 0)
        rows.append((target, f"{purge['purged_jobs']:,} jobs purged in {purge['seconds']} s; batches max "
                     f"{purge['batch_max_ms']} ms; longest wait meanwhile {worst} ms"
                     + ("" if purge["jobs"] >= 100_000 else f" (at {purge['jobs']:,} jobs only)"),
                     verdict(worst < 1000)))
    else:
        rows.append((target, "-", "n/a"))
    mem = _get(results, "memory")
    if mem:
        first, last = mem["samples"][0], mem["samples"][-1]
        rows.append((f"worker RSS after {last['jobs']:,} jobs within 10% of after {first['jobs']:,}",
                     f"{first['VmRSS'] / 1024:.1f} MiB -> {last['VmRSS'] / 1024:.1f} MiB ({mem['growth_pct']:+.1f}%)",
                     verdict(mem["growth_pct"] <= 10)))
    else:
        rows.append(("worker RSS after 20,000 jobs within 10% of after 1,000", "-", "n/a"))
    return rows


# --- console ------------------------------------------------------------------------


def console_table(results: dict) -> str:
    lines = []
    width = 66
    lines.append(f"{'throughput':<{width}} {'N=1':>10} {'N=2':>10}  unit")
    for label, one, two, unit in throughput_rows(results):
        lines.append(f"{label:<{width}} {_fmt(one):>10} {_fmt(two):>10}  {unit}")
    lines.append("")
    lines.append(f"{'ratios (of medians | median of per-round ratios)':<{width}} {'N=1':>13} {'N=2':>13}")
    for label, one, one_r, two, two_r in ratio_rows(results):
        lines.append(f"{label:<{width}} {_fmt(one, 2):>6} | {_fmt(one_r, 2):<4} "
                     f"{_fmt(two, 2):>6} | {_fmt(two_r, 2):<4}")
    lat = _get(results, "latency")
    if lat:
        lines.append("")
        lines.append(f"{'latency (ms), 2 idle workers':<{width}} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>9}"
                     "   n  stalled")
        for key, label in LATENCY_ROWS:
            if key in lat:
                row = lat[key]
                lines.append(f"{label:<{width}} {row['p50_ms']:>7} {row['p95_ms']:>7} {row['p99_ms']:>7} "
                             f"{row['max_ms']:>9}"
                             f"   {row['n']}  {row.get('stalled', '-')}")
    scale = _get(results, "scale")
    if scale and scale.get("shapes"):
        lines.append("")
        title = f"scale: {scale['jobs']:,} jobs, {scale['steps']:,} steps"
        lines.append(f"{title:<{width}}"
                     f" {'median ms':>10} {'queries':>8}  plan")
        for shape in scale["shapes"]:
            flag = " SEQ SCAN" if shape.get("seq_scans") else ""
            lines.append(f"{shape['name']:<{width}} {shape['median_ms']:>10} {shape['queries']:>8}  "
                         f"{shape['plan_summary']}{flag}")
    lines.append("")
    lines.append("targets")
    for target, measured, verdict in targets(results):
        lines.append(f"  [{verdict}] {target}: {measured}")
    return "\n".join(lines)


LATENCY_ROWS = (
    ("schedule_to_start", "schedule() call -> first state starts (Step.started_at)"),
    ("schedule_to_claim", "schedule() call -> job claimed by a worker (Job.started_at)"),
    ("reply_to_resume", "reply_to_escalation() call -> job resumes (Step.started_at)"),
    ("child_to_parent", "child finishes (Job.finished_at) -> parent resumes"),
    ("schedule_call", "schedule() call itself (returns)"),
    ("reply_call", "reply_to_escalation() call itself (returns)"),
)


def peers_markdown(peers: dict | None) -> list[str]:
    """What the peers were (versions), how they ran, and any that could not."""
    if not peers:
        return []
    out = ["Peers (`--peers`, bench/peers): the same 10-state no-op workload on the same PostgreSQL, each in one "
           "process, in their own virtualenv (`bench/.venv-peers`); pgbench's C clients loop envoy's checkpoint on "
           "envoy's tables with a real transition's JSON, as a transaction and as one statement.", ""]
    for name in ("pgbench", "langgraph", "dbos"):
        value = peers.get(name) or {}
        if "skipped" in value:
            out.append(f"- {name}: skipped ({value['skipped']})")
            continue
        version = value.get("version") or (value.get("1") or {}).get("version")
        rows = (value.get("1") or {}).get("rows_per_workflow")
        out.append(f"- {name}: {version or '?'}" + (f"; rows written per workflow: {rows}" if rows else ""))
    out.append("")
    return out


def retention_markdown(purge: dict | None) -> list[str]:
    if not purge:
        return []
    return [
        "## Retention", "",
        f"`purge_finished(\"1d\")` (what `envoy_purge` runs) on a fresh dataset of {purge['jobs']:,} jobs and "
        f"{purge['steps']:,} steps, while another thread sweeps and locks random job rows in short transactions "
        "(bench/retention.py).", "",
        "| | value |", "|---|---:|",
        f"| jobs purged (with their steps, waits, escalations) | {purge['purged_jobs']:,} |",
        f"| seconds | {purge['seconds']} ({_fmt(purge['jobs_per_s'])} jobs/s) |",
        f"| batches; p50 / max ms each (its locks are held that long) | {purge['batches']}; "
        f"{purge['batch_p50_ms']} / {purge['batch_max_ms']} |",
        f"| meanwhile: sweeps; max ms | {purge['sweeps']}; {purge['sweep_max_ms']} |",
        f"| meanwhile: row locks; p50 / max ms | {purge['row_locks']:,}; {purge['row_lock_p50_ms']} / "
        f"{purge['row_lock_max_ms']} |",
        f"| jobs left (unfinished, or with unfinished jobs below) | {purge['left']:,} |", "",
    ]


# --- markdown --------------------------------------------------------------------------


def markdown(results: dict) -> str:
    m = results.get("machine", {})
    args = results.get("args", {})
    out = ["# envoy-django benchmarks", ""]
    out.append(f"Run {m.get('date', '?')} with `make bench` (bench/run.py); raw data in `results.json`, "
               "chart in `throughput.png`.")
    out.append("")
    out.append("## Machine")
    out.append("")
    out.append(f"- {m.get('nproc')} CPUs ({m.get('cpu')}), {m.get('memory_gb')} GB RAM, Linux {m.get('kernel')}")
    pg = m.get("postgresql_settings", {})
    out.append(f"- PostgreSQL {m.get('postgresql')} (synchronous_commit={pg.get('synchronous_commit')}, "
               f"fsync={pg.get('fsync')}, shared_buffers={pg.get('shared_buffers')}), Redis {m.get('redis')}, "
               "both on the same machine")
    out.append(f"- Python {m.get('python')}, Django {m.get('django')}, RQ {m.get('rq')}, psycopg {m.get('psycopg')}; "
               f"worker CONN_MAX_AGE={m.get('conn_max_age')}")
    loads = results.get("load") or {}
    if loads:
        parts = ", ".join(f"{phase} {v.get('load_before')}->{v.get('load_after', '?')}" for phase, v in loads.items())
        out.append(f"- 1-minute load average before->after each phase: {parts} "
                   f"(on {m.get('nproc')} CPUs, the benchmark's own processes included)")
    out.append("")
    out.append("## Throughput")
    out.append("")
    out.append(f"{args.get('jobs', '?'):,} jobs per run; {args.get('rounds', 1)} rounds, interleaved "
               "(ceiling, RQ, envoy, the peers with --peers, then again), and the median of the rounds is shown. "
               "N is the number of client processes "
               "(ceiling) or worker "
               "processes (RQ, envoy). RQ: jobs enqueued first, clock from releasing the started workers to the "
               "last job ending (RQ's own exit, which joins a pubsub thread for ~1 s, left out). "
               "envoy: jobs scheduled first with workers stopped, then "
               "`envoy_worker --concurrency N --burst`; clock from the first claim to the last job finishing "
               "(Job rows), process start-up excluded.")
    out.append("")
    out.append("| measurement | N=1 | N=2 | unit | rounds, N=1 | rounds, N=2 |")
    out.append("|---|---:|---:|---|---|---|")
    for (label, one, two, unit), (_, path, _) in zip(throughput_rows(results), THROUGHPUT, strict=True):
        out.append(f"| {label} | {_fmt(one)} | {_fmt(two)} | {unit} | {round_values(results, path, '1')} | "
                   f"{round_values(results, path, '2')} |")
    out.append("")
    out.append("| ratio | N=1 | N=1, per round | N=2 | N=2, per round |")
    out.append("|---|---:|---:|---:|---:|")
    for label, one, one_r, two, two_r in ratio_rows(results):
        out.append(f"| {label} | {_fmt(one, 2)} | {_fmt(one_r, 2)} | {_fmt(two, 2)} | {_fmt(two_r, 2)} |")
    out.append("")
    out.append("*per round*: the median of the ratios taken within each round (both numbers measured minutes apart, "
               "under the same background load); the plain ratio divides the medians.")
    out.append("")
    out += peers_markdown(results.get("peers"))
    lat = results.get("latency")
    if lat:
        out.append("## Latency")
        out.append("")
        out.append(f"{lat['workers']} idle `envoy_worker` processes waiting. One sample at a time: each is waited "
                   f"for, then {lat['gap_ms']:.0f} ms idle before the next. Timestamps from the Step and Job rows "
                   "against the caller's clock (one machine). *Stalled*: samples over "
                   f"{lat.get('stall_seconds', 1)} s (a job left for the sweep, which re-enqueues after "
                   f"LEASE_SECONDS={lat.get('lease_seconds')} + up to SWEEP_INTERVAL={lat.get('sweep_interval')}).")
        out.append("")
        out.append("| path | n | p50 ms | p95 ms | p99 ms | max ms | stalled |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for key, label in LATENCY_ROWS:
            if key in lat:
                row = lat[key]
                out.append(f"| {label} | {row['n']} | {row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} | "
                           f"{row['max_ms']} | {row.get('stalled', '-')} |")
                if row.get("without_stalls"):
                    w = row["without_stalls"]
                    out.append(f"| ... the same without the stalled samples | {w['n']} | {w['p50_ms']} | "
                               f"{w['p95_ms']} | "
                               f"{w['p99_ms']} | {w['max_ms']} | 0 |")
        if lat.get("schedule_legs_p50_ms"):
            legs = lat["schedule_legs_p50_ms"]
            out.append("Median legs of schedule() -> start (Job.created_at, enqueued_at, started_at, Step.started_at): "
                       + ", ".join(f"{k.replace('_', ' ')} {v} ms" for k, v in legs.items()) + ".")
        out.append("")
    mem = results.get("memory")
    if mem:
        out.append("## Worker memory")
        out.append("")
        out.append("One `envoy_worker --concurrency 1`; VmRSS of its worker child process (1-state jobs).")
        out.append("")
        out.append("| jobs done | VmRSS MiB | VmHWM MiB |")
        out.append("|---:|---:|---:|")
        for s in mem["samples"]:
            out.append(f"| {s['jobs']:,} | {s['VmRSS'] / 1024:.1f} | {s.get('VmHWM', 0) / 1024:.1f} |")
        out.append("")
    scale = results.get("scale")
    if scale and scale.get("shapes"):
        out.append("## Scale")
        out.append("")
        out.append(f"{scale['jobs']:,} jobs, {scale['steps']:,} Step rows, {scale['waits']:,} waits, "
                   f"{scale['escalations']:,} escalations ({scale['status_counts']}); generated with "
                   f"`INSERT ... SELECT generate_series` in {scale.get('generated_seconds', '?')} s"
                   f"{' (cached)' if scale.get('cached') else ''}, then VACUUM ANALYZE. Warm timings: "
                   f"median of {args.get('repeat', 5)} runs after one warm-up; `cold` is that first run. "
                   "Plan: the top node and the scans of EXPLAIN for each query (all queries of the shape).")
        out.append("")
        out.append("| query shape | median ms | max ms | cold ms | queries | plan |")
        out.append("|---|---:|---:|---:|---:|---|")
        for s in scale["shapes"]:
            flag = " **SEQ SCAN on " + ", ".join(s["seq_scans"]) + "**" if s.get("seq_scans") else ""
            out.append(f"| {s['name']} | {s['median_ms']} | {s['max_ms']} | {s['cold_ms']} | {s['queries']} | "
                       f"{s['plan_summary']}{flag} |")
        out.append("")
        if scale.get("notes"):
            for note in scale["notes"]:
                out.append(f"- {note}")
            out.append("")
    if results.get("incidents"):
        out.append("## Incidents")
        out.append("")
        out.append("Measurements that failed and were run again:")
        out.append("")
        out += [f"- {incident}" for incident in results["incidents"]]
        out.append("")
    out += retention_markdown(results.get("retention"))
    if loads:
        out.append("## Load during the run")
        out.append("")
        out.append("Busiest processes when each phase started (CPU use over one second, from /proc):")
        out.append("")
        for phase, v in loads.items():
            out.append(f"- {phase} (load {v.get('load_before')} -> {v.get('load_after', '?')}): "
                       + "; ".join(f"`{line}`" for line in v.get("busy_before", [])[:4]))
        out.append("")
    out.append("## Targets")
    out.append("")
    out.append("| target | measured | verdict |")
    out.append("|---|---|---|")
    for target, measured, verdict in targets(results):
        out.append(f"| {target} | {measured} | {verdict} |")
    out.append("")
    if results.get("profile"):
        from bench import profile

        out += profile.markdown(results["profile"])
    return "\n".join(out)


# --- chart -----------------------------------------------------------------------------


def chart(results: dict, path: Path) -> bool:
    """Grouped bars per worker count; False (and a note) if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed (pip install -e '.[bench]'); no chart drawn")
        return False
    series = [
        ("PostgreSQL ceiling (tx/s, N clients)", ("ceiling", "tps"), "#9e9e9e"),
        ("raw RQ no-op (jobs/s)", ("rq", "noop", "jobs_per_s"), "#f4b183"),
        ("raw RQ + 1 tx (jobs/s)", ("rq", "checkpoint", "jobs_per_s"), "#c55a11"),
        ("envoy 10-state (transitions/s)", ("envoy", "ten", "transitions_per_s"), "#2e75b6"),
        ("envoy 1-state (jobs/s)", ("envoy", "one", "jobs_per_s"), "#9dc3e6"),
    ]
    counts = ["1", "2"]
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    width = 0.8 / len(series)
    for index, (label, path_keys, color) in enumerate(series):
        values = [_get(results, *path_keys[:-1], n, path_keys[-1]) or 0 for n in counts]
        xs = [i + (index - (len(series) - 1) / 2) * width for i in range(len(counts))]
        bars = ax.bar(xs, values, width, label=label, color=color)
        for bar, value in zip(bars, values, strict=True):
            if value:
                ax.annotate(f"{value:,.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels([f"{n} worker{'s' if n != '1' else ''} / client{'s' if n != '1' else ''}" for n in counts])
    ax.set_ylabel("per second")
    ax.set_ylim(bottom=0)
    m = results.get("machine", {})
    rounds = results.get("args", {}).get("rounds", 1)
    ax.set_title(f"envoy-django throughput vs raw RQ and the PostgreSQL ceiling (median of {rounds} rounds)\n"
                 f"{m.get('nproc')} CPUs, PostgreSQL {m.get('postgresql')}, Redis {m.get('redis')}, {m.get('date')}",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
