"""LangGraph peer: a 10-node no-op StateGraph checkpointed by PostgresSaver with durability="sync".

Run by the peers venv's python (bench/peers/venv.py), never the project's:
``BENCH_PEER_DSN=<libpq dsn> python bench/peers/langgraph_run.py --jobs N``.
Prints one JSON line. The database in BENCH_PEER_DSN is the caller's fresh
``envoy_bench_peer_langgraph``.

The graph is envoy's bench_ten in LangGraph terms: nodes S0 -> S1 -> ... ->
S9 -> END, each returning ``{"step": i}``. ``durability="sync"`` makes
LangGraph write each superstep's checkpoint before the next step starts, the
same promise envoy's per-transition commit makes (the default, "async",
writes it while the next step already runs).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, TypedDict

from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.graph import END, START, StateGraph
from script_args import jobs_and_dsn  # a sibling: the script's own folder is on sys.path

STATES = 10


class State(TypedDict):
    step: int


def _node(i: int) -> Callable[[State], dict[str, Any]]:
    def node(state: State) -> dict[str, Any]:
        return {"step": i}

    return node


def build() -> StateGraph:
    builder = StateGraph(State)
    for i in range(STATES):
        builder.add_node(f"S{i}", _node(i))
    builder.add_edge(START, "S0")
    for i in range(STATES - 1):
        builder.add_edge(f"S{i}", f"S{i + 1}")
    builder.add_edge(f"S{STATES - 1}", END)
    return builder


def main() -> None:
    args, dsn = jobs_and_dsn(__doc__.splitlines()[0])

    with PostgresSaver.from_conn_string(dsn) as checkpointer:
        checkpointer.setup()
        graph = build().compile(checkpointer=checkpointer)

        def run_one() -> None:
            config = {"configurable": {"thread_id": str(uuid.uuid4())}}
            result = graph.invoke({"step": -1}, config, durability="sync")
            if result["step"] != STATES - 1:
                raise RuntimeError(f"graph ended at step {result['step']}")

        for _ in range(args.warmup):
            run_one()
        began = time.perf_counter()
        for _ in range(args.jobs):
            run_one()
        seconds = time.perf_counter() - began

        # What "sync" durability wrote per workflow: proof the checkpoints are in PostgreSQL.
        workflows = args.jobs + args.warmup
        with checkpointer.conn.cursor() as cur:
            checkpoints = cur.execute("SELECT count(*) AS n FROM checkpoints").fetchone()["n"]
            writes = cur.execute("SELECT count(*) AS n FROM checkpoint_writes").fetchone()["n"]

    steps = args.jobs * STATES
    print(json.dumps({
        "version": f"langgraph {version('langgraph')}, "
                   f"langgraph-checkpoint-postgres {version('langgraph-checkpoint-postgres')}",
        "workflows": args.jobs,
        "steps": steps,
        "seconds": round(seconds, 3),
        "steps_per_s": round(steps / seconds, 1),
        "rows_per_workflow": {"checkpoints": round(checkpoints / workflows, 2),
                              "checkpoint_writes": round(writes / workflows, 2)},
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
