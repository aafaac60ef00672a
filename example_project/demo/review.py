"""The content-review flow: fan out one child job per section, then ask a person.

It shows the three kinds of waiting in one job: ``ctx.spawn`` (children that
run on any worker), the parent blocking until they all end, and
``ctx.escalate`` (a reviewer answering in the admin, minutes or weeks later).
The "summary" is deterministic on purpose (word count and first sentence), so
the demo needs no model and its output can be asserted in tests.
"""

from __future__ import annotations

import re
from typing import Any

from envoy_django import Context, StateFlow

DEFAULT_REVIEWER = "admin"

SAMPLE_ARTICLE: dict[str, Any] = {
    "title": "Envoy in five minutes",
    "reviewer": DEFAULT_REVIEWER,
    "sections": [
        {"heading": "What it is", "text": (
            "Envoy runs workflows as durable state machines. Each state is a small Python function, "
            "and every step is saved to the database.")},
        {"heading": "Why durable", "text": (
            "A worker can die at any moment. The job resumes from its last checkpoint on another "
            "worker, and a finished step never runs twice.")},
        {"heading": "People in the loop", "text": (
            "Some decisions need a person. A flow can escalate to a reviewer and wait, for minutes "
            "or for weeks, until they answer in the admin.")},
    ],
}

VERDICTS = {"publish": "Publish", "revise": "Send back for revision"}

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# --- the child: one section -------------------------------------------------------


def summarize_section(ctx: Context) -> Context:
    section = ctx.input() or {}
    text = str(section.get("text") or "").strip()
    ctx.output({
        "heading": section.get("heading") or "(untitled)",
        "words": len(text.split()),
        "first_sentence": _SENTENCE_END.split(text, maxsplit=1)[0] if text else "",
    })
    return ctx


summarize_section_flow = StateFlow([
    {"name": "Summarize", "on_state": summarize_section, "router": {"next": None}},
])


# --- the parent -------------------------------------------------------------------


def spawn_summaries(ctx: Context) -> Context:
    """One child job per section; the job blocks here until every child has ended.

    The article goes into data: a later state's input is its predecessor's output.
    """
    article = ctx.input() or {}
    ctx.set("article", article)
    sections = article.get("sections") or []
    ctx.set("children", [ctx.spawn("summarize-section", section) for section in sections])
    ctx.progress(0.2, f"summarizing {len(sections)} sections")
    return ctx


def combine(ctx: Context) -> Context:
    summaries = []
    for wait_id in ctx.get("children") or []:
        result = ctx.result(wait_id) or {}
        if result.get("status") != "done":
            ctx.error(f"a section summary ended as {result.get('status')}: {result.get('error')}")
            return ctx
        summaries.append(result["value"])
    ctx.set("summaries", summaries)
    ctx.set("words", sum(s["words"] for s in summaries))
    return ctx


def ask_reviewer(ctx: Context) -> Context:
    article = ctx.get("article") or {}
    title = article.get("title") or "(untitled)"
    lines = [f'Please review "{title}" ({len(ctx.get("summaries"))} sections, {ctx.get("words")} words):']
    lines += [f"- {s['heading']} ({s['words']} words): {s['first_sentence']}" for s in ctx.get("summaries")]
    ctx.set("escalation", ctx.escalate(
        article.get("reviewer") or DEFAULT_REVIEWER,
        "\n".join(lines),
        [
            {"id": "verdict", "type": "select", "label": "Verdict", "options": VERDICTS},
            {"id": "comment", "type": "comment", "label": "Comment for the author"},
            {"id": "approve", "type": "approve", "label": "I have read the summaries"},
        ],
        # A rejection is a decision too: the flow records it instead of failing.
        on_reject="continue",
    ))
    ctx.progress(0.6, "waiting for the reviewer")
    return ctx


def decide(ctx: Context) -> Context:
    reply = ctx.result(ctx.get("escalation")) or {}
    values = reply.get("value") or {}
    ctx.output({
        "title": ctx.get("article.title"),
        "status": reply.get("status"),
        "verdict": values.get("verdict"),
        "comment": values.get("comment"),
        "words": ctx.get("words"),
    })
    ctx.progress(1.0, f"{reply.get('status')}: {values.get('verdict')}")
    return ctx


content_review_flow = StateFlow([
    {"name": "Summarize", "on_state": spawn_summaries, "router": {"next": "Combine"}},
    {"name": "Combine", "on_state": combine, "router": {"next": "Review"}},
    {"name": "Review", "on_state": ask_reviewer, "router": {"next": "Decide"}},
    {"name": "Decide", "on_state": decide, "router": {"next": None}},
])
