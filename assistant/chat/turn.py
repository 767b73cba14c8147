"""One user turn: the model answers, or calls tools and answers after their results.

model -> parse every <tool_call> -> validate against the tool's schema -> approve -> call
-> <tool_response> -> model again, for a bounded number of rounds. Every outcome of a
call (malformed JSON, unknown tool, bad arguments, denial, timeout, server error, an
identical repeat) reaches the model as a result it can correct, never as a crash. The
front end supplies the approval prompt and watches through an observer.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Protocol

from assistant.engine import (ChatCache, Engine, Event, Failed, GenerationOptions, Prefill,
                              ToolCallParsed, TurnResult, TurnStats)
from assistant.mcp.approval import ApprovalRequest, Approvals, Approver
from assistant.mcp.catalog import TOOL_SHARE, Catalog

if TYPE_CHECKING:  # a turn without tools never loads the host
    from assistant.mcp.audit import AuditLog
    from assistant.mcp.host import McpHost

MAX_ROUNDS = 6
PROGRESS_EVERY_S = 0.1  # at most this often a call's progress reaches the front end
RESULT_TOKENS = 1500  # a tool result longer than this is cut for the model (head and tail)
ROUNDS_NOTE = ("Tool-call limit for this turn reached; no more tools will run. Answer now "
               "with what you have.")


@dataclass
class ToolCall:
    """One call as the user sees it, from request to result."""

    name: str | None  # as the model wrote it
    arguments: dict | None
    raw: str
    server: str | None = None
    tool: str | None = None
    status: str = "pending"  # pending | running | ok | error | denied | skipped
    decision: str | None = None
    result: str = ""  # the full result, for the user
    sent: str = ""  # what the model was given
    error: str | None = None
    duration_s: float = 0.0
    constrained: bool = False  # decoded under the tool-call grammar
    progress: str | None = None  # the server's latest progress report, e.g. "3/10 step 3"


class Observer(Protocol):
    def on_event(self, event: Event) -> None: ...
    def on_tool_call(self, call: ToolCall) -> None: ...
    # Optional: ``on_message(message)`` is called with each message the turn adds to the
    # history, as it is added, so a front end can store it at once.


@dataclass
class Tools:
    """What a chat needs to use tools: the host, the offer, consent and the audit trail."""

    host: McpHost
    catalog: Catalog
    approvals: Approvals
    approve: Approver
    audit: AuditLog
    count: Callable[[str], int]
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]


@dataclass
class TurnOutcome:
    messages: list[dict] = field(default_factory=list)  # to append to the history
    text: str = ""
    thinking: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    stats: list[TurnStats] = field(default_factory=list)
    finish_reason: str = "stop"  # stop | length | cancelled | failed | rounds
    error: Failed | None = None


class Turn:
    def __init__(self, engine: Engine, history: list[dict], options: GenerationOptions, *,
                 chat: ChatCache, observer: Observer, tools: Tools | None = None,
                 max_rounds: int = MAX_ROUNDS, prefill_after: bool = True):
        self.engine, self.history, self.options = engine, list(history), options
        self.chat, self.observer, self.tools, self.max_rounds = chat, observer, tools, max_rounds
        # Prefill for the user's next message once the turn ends (a one-shot front end,
        # which sends none, turns it off). Between tool rounds it always happens.
        self.prefill_after = prefill_after
        self.prefill: Prefill | None = None  # the latest idle prefill started
        self._cancel = threading.Event()
        self._current: object | None = None  # the Generation or call Future running now

    def cancel(self) -> None:
        """Stop the generation or tool call under way; what was produced stays."""
        self._cancel.set()
        current = self._current
        if current is not None:
            current.cancel()

    def run(self) -> TurnOutcome:
        offered = self._offer()
        outcome = self._rounds(offered)
        if self.prefill_after:
            self._prefill_next(offered, "user")
        return outcome

    def _rounds(self, offered: list[dict] | None) -> TurnOutcome:
        outcome = TurnOutcome()
        seen: set[str] = set()
        for round_ in range(self.max_rounds + 1):
            result = self._generate(offered)
            outcome.stats += [result.stats] if result.stats else []
            outcome.text, outcome.thinking = result.text, result.thinking
            if result.error:
                outcome.finish_reason, outcome.error = "failed", result.error
                if result.text.strip():  # an answer that broke off: what arrived stays
                    self._append(outcome, {"role": "assistant", "content": result.text.rstrip()})
                return outcome
            message = {"role": "assistant", "content": result.text}
            if result.thinking:
                message["reasoning_content"] = result.thinking
            calls = [ToolCall(c.name, c.arguments, c.raw, constrained=c.constrained)
                     for c in result.tool_calls]
            if calls:
                message["tool_calls"] = [
                    {"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls if c.name and c.arguments is not None]
                broken = [c.raw for c in calls if not (c.name and c.arguments is not None)]
                if broken:  # keep what the model wrote, so the error makes sense to it
                    message["content"] = "\n".join(
                        [result.text, *(f"<tool_call>\n{raw}\n</tool_call>" for raw in broken)]
                    ).strip()
            self._append(outcome, message)
            if result.finish_reason == "cancelled" or self._cancel.is_set():
                outcome.finish_reason = "cancelled"
                return outcome
            if not calls:
                outcome.finish_reason = result.finish_reason or "stop"
                return outcome
            last_round = round_ == self.max_rounds
            for call, parsed in zip(calls, result.tool_calls):
                if not last_round:  # while the user approves and the call runs
                    self._prefill_next(offered, "tool")
                outcome.calls.append(call)
                if last_round:
                    self._finish(call, "skipped", ROUNDS_NOTE)
                else:
                    self._handle(call, parsed, seen)
                self._append(outcome, {"role": "tool", "name": call.name or "unknown",
                                       "content": call.sent})
                if self._cancel.is_set():
                    outcome.finish_reason = "cancelled"
                    return outcome
            if last_round:
                outcome.finish_reason = "rounds"
                return outcome
            if round_ == self.max_rounds - 1:
                calls[-1].sent += "\n\n" + ROUNDS_NOTE
                self.history[-1]["content"] = calls[-1].sent
        return outcome

    # -- steps ----------------------------------------------------------------------

    def _offer(self) -> list[dict] | None:
        return offered_tools(self.engine, self.tools, self.history)

    def _prefill_next(self, offered: list[dict] | None, role: str) -> None:
        """Let the engine prefill, in idle time, what the next request will start with:
        the history so far and the opening of a message from ``role``."""
        self.prefill = self.engine.prefill(self.history, replace(self.options, tools=offered),
                                           self.chat, role=role)

    def _generate(self, offered: list[dict] | None) -> TurnResult:
        options = replace(self.options, tools=offered)
        generation = self.engine.generate(self.history, options, self.chat)
        self._current = generation
        if self._cancel.is_set():
            generation.cancel()
        result = TurnResult()
        for event in generation:
            result.add(event)
            self.observer.on_event(event)
        self._current = None
        return result

    def _append(self, outcome: TurnOutcome, message: dict) -> None:
        self.history.append(message)
        outcome.messages.append(message)
        on_message = getattr(self.observer, "on_message", None)
        if on_message is not None:
            on_message(message)

    def _finish(self, call: ToolCall, status: str, sent: str, error: str | None = None) -> None:
        call.status, call.sent, call.error = status, sent, error
        self.observer.on_tool_call(call)

    def _handle(self, call: ToolCall, parsed: ToolCallParsed, seen: set[str]) -> None:
        tools = self.tools
        if parsed.error:
            return self._finish(call, "error", f"Error: {parsed.error}. Write the call as "
                                '<tool_call>{"name": ..., "arguments": {...}}</tool_call>.',
                                parsed.error)
        offered = tools.catalog.get(call.name) if tools else None
        if offered is None:
            names = ", ".join(tools.catalog.tools) if tools and tools.catalog.tools else "none"
            error = f"unknown tool {call.name!r}"
            return self._finish(call, "error", f"Error: {error}. Available tools: {names}.",
                                error)
        call.server, call.tool = offered.info.server, offered.info.name
        problem = schema_problem(offered.info.input_schema, call.arguments)
        if problem:
            return self._finish(call, "error", f"Error: invalid arguments for {call.name}: "
                                f"{problem}. Fix them and call again.", problem)
        key = json.dumps([call.name, call.arguments], sort_keys=True)
        if key in seen:
            return self._finish(call, "skipped", "Not run again: this exact call was already "
                                "made in this turn; use its result above.")
        seen.add(key)

        policy = tools.approvals.policy(offered.info)
        if policy == "ask":
            self.observer.on_tool_call(call)  # shown as pending while the user decides
            choice = tools.approve(ApprovalRequest(offered.info, call.arguments))
            call.decision = choice
            allowed = tools.approvals.remember(offered.info, choice)
        else:
            call.decision = "stored: " + policy
            allowed = policy == "allow"
        if not allowed or self._cancel.is_set():
            self._audit(call, "denied", 0)
            return self._finish(call, "denied", "Cancelled: the user denied this tool call. "
                                "Do not retry it; answer without it or ask the user.",
                                "denied by the user")

        call.status = "running"
        self.observer.on_tool_call(call)

        shown = [0.0]

        def progress(report) -> None:  # on the host's thread, while this one waits
            # A server may report thousands of times a second: a person reads ~10.
            now = time.monotonic()
            if call.status == "running" and now - shown[0] >= PROGRESS_EVERY_S:
                shown[0] = now
                call.progress = report.describe()
                self.observer.on_tool_call(call)

        future: Future = tools.host.start_call(call.server, call.tool, call.arguments,
                                               on_progress=progress)
        self._current = future
        if self._cancel.is_set():  # cancelled between the check above and now
            future.cancel()
        try:
            result = future.result()
        except CancelledError:
            call.duration_s = 0.0
            self._audit(call, "cancelled", 0)
            return self._finish(call, "error", "Cancelled: the user stopped this tool call.",
                                "stopped by the user")
        finally:
            self._current = None
            call.progress = None
        call.result, call.duration_s = result.text, result.duration_s
        self._audit(call, "ok" if result.ok else "error", len(result.text.encode()),
                    result.error)
        if not result.ok:
            return self._finish(call, "error", f"Error: {result.error}", result.error)
        self._finish(call, "ok", cut_result(result.text, RESULT_TOKENS, tools))

    def _audit(self, call: ToolCall, outcome: str, size: int, error: str | None = None) -> None:
        self.tools.audit.record(server=call.server, tool=call.tool, arguments=call.arguments,
                                decision=call.decision or "", duration_s=call.duration_s,
                                outcome=outcome, result_bytes=size, error=error)


def offered_tools(engine: Engine, tools: Tools | None, history: list[dict]
                  ) -> list[dict] | None:
    """The tool schemas a turn over ``history`` offers: those most relevant to the latest
    user message, within the share of the context window tools may take."""
    if tools is None or not tools.catalog.tools:
        return None
    query = next((m["content"] for m in reversed(history)
                  if m.get("role") == "user" and isinstance(m.get("content"), str)), "")
    budget = int(engine.context_window * TOOL_SHARE)
    return [t.schema for t in tools.catalog.offer(query, budget)]


def prefill_history(engine: Engine, history: list[dict], options: GenerationOptions,
                    chat: ChatCache, tools: Tools | None = None) -> Prefill:
    """Prefill a chat's history in idle time (a chat just opened from the store, or a
    model just switched), so that its next turn prefills only the new message."""
    offered = offered_tools(engine, tools, history)
    return engine.prefill(history, replace(options, tools=offered), chat, role="user")


def schema_problem(schema: dict, arguments: dict) -> str | None:
    import jsonschema  # only a turn that calls a tool needs it

    try:
        error = jsonschema.exceptions.best_match(
            jsonschema.validators.validator_for(schema)(schema).iter_errors(arguments))
    except Exception:  # a broken schema or an unresolvable $ref: the server's problem,
        return None  # so let the server judge the call
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def cut_result(text: str, budget: int, tools: Tools) -> str:
    """Keep the head and the tail of a long result, and say what was cut."""
    ids = tools.encode(text)
    if len(ids) <= budget:
        return text
    head, tail = ids[: budget * 2 // 3], ids[-(budget // 3):]
    cut = len(ids) - len(head) - len(tail)
    return (f"{tools.decode(head)}\n[... {cut:,} tokens cut here; the user can see the full "
            f"result ...]\n{tools.decode(tail)}")
