"""An OpenAI-compatible inference server as the engine (vLLM, llama.cpp's ``llama-server``,
Ollama, LM Studio, ``mlx_lm.server``).

``RemoteEngine`` has the local ``Engine``'s methods and streams the same typed events,
so the turn loop, approvals, the audit log, ``ask``, the chat app and the summarizer run
unchanged on top of it. The HTTP side is the ``openai`` package: typed streaming of
chat completions, with errors sorted by kind (refused connection, 401, 404, 5xx,
timeout), which is what each one-line message below is built from.

What differs from the local engine:

- Each request runs on its own thread, so several can be in flight (``summarize
  --parallel``) and the server's continuous batching can work.
- Reasoning arrives in a ``reasoning_content`` (or ``reasoning``) field, or as
  ``<think>`` in the text; tool calls as streamed ``tool_calls``, or as ``<tool_call>``
  text from servers that do not parse them. Both end as the same events.
- The server tokenizes, so text from outside is defanged before it is sent: wherever it
  spells a control token (``<|im_end|>``, ``<tool_call>``), a word joiner goes after the
  ``<`` and it stays text.
- Budgets are estimated (``EstimatedCounter``), and what only a model in this process can
  do (constrained tool calls, idle prefill, the KV cache) is not available: ``local`` is
  False and front ends say so where it is asked for.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from assistant.engine.events import (Failed, Finished, PromptReady, TextDelta, ThinkingDelta,
                                     ToolCallParsed, TurnStats)
from assistant.engine.generation import (Generation, GenerationOptions, Prefill,
                                         effective_thinking)
from assistant.errors import ModelError

DEFAULT_SERVER_MODEL = "default_model"  # what mlx_lm.server calls the model it was started with
CONNECT_TIMEOUT = 10.0

# The text of a control token: <|...|> and Qwen3's tag-like markers.
_CONTROL_TEXT = re.compile(r"<(?=\|[^\s<>|]{1,40}\|>|/?(?:think|tool_call|tool_response)>)")
WORD_JOINER = "\u2060"


def defang(text: str) -> str:
    """``text`` with every spelling of a control token broken by a word joiner, so a
    server's tokenizer reads it as text (it looks the same to a person)."""
    return _CONTROL_TEXT.sub("<" + WORD_JOINER, text)


def _defang_json(value: Any) -> Any:
    """Every string in a JSON value defanged (``<`` only occurs inside JSON strings)."""
    return json.loads(defang(json.dumps(value, ensure_ascii=False)))


class EstimatedCounter:
    """Token counts for a model whose tokenizer is on another machine.

    Three characters a token: Qwen's tokenizer averages nearer four on English prose and
    code, so budgets err on the safe side. ``encode_plain`` packs three characters into
    one number, so cutting a long tool result by "tokens" and decoding it back is exact.
    """

    CHARS = 3
    special_tokens: dict[str, int] = {}

    def count(self, text: str) -> int:
        return -(-len(text) // self.CHARS)

    def encode_plain(self, text: str) -> list[int]:
        return [sum((ord(c) + 1) << (21 * i) for i, c in enumerate(text[at:at + self.CHARS]))
                for at in range(0, len(text), self.CHARS)]

    encode = encode_plain

    def decode(self, ids: list[int]) -> str:
        chars = []
        for packed in ids:
            while packed:
                chars.append(chr((packed & 0x1FFFFF) - 1))
                packed >>= 21
        return "".join(chars)


class _QwenMarkers:
    """What mlx-lm's text state machine needs to know of a tokenizer, for Qwen3's
    markers in a server's streamed text."""

    has_thinking, think_start, think_end = True, "<think>", "</think>"
    has_tool_calling, tool_call_start, tool_call_end = True, "<tool_call>", "</tool_call>"
    structural_markers: list[str] = []
    response_transitions: dict = {}
    tool_parser = None


class RemoteEngine:
    """Generations on an OpenAI-compatible server at ``url`` (ending in ``/v1``)."""

    local = False
    adapter_name = None  # adapters are local-only

    def __init__(self, url: str, *, model: str | None = None, api_key: str | None = None,
                 api_key_env: str | None = None, context_limit: int = 32768,
                 timeout: float = 120.0):
        import httpx2
        import openai

        self.url = url.strip().rstrip("/")
        parts = urlsplit(self.url)
        if not parts.hostname:
            raise ModelError(f"{url!r} is not a server address; use http://HOST:PORT/v1")
        self.host = parts.netloc
        self.model_name = model
        self._key_env = api_key_env
        self.context_window = context_limit
        self.timeout = timeout
        self.counter = EstimatedCounter()
        self._client = openai.OpenAI(
            base_url=self.url, api_key=api_key or "none", max_retries=0,
            timeout=httpx2.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)))
        self._openai = openai
        self._pending: set[Generation] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._error: ModelError | None = None
        threading.Thread(target=self._check, name="remote-check", daemon=True).start()

    # -- what the front ends read ---------------------------------------------------

    @property
    def label(self) -> str:
        return f"{self.model_name or 'server'} @ {self.host}"

    @property
    def name(self) -> str:
        return f"{self.model_name or DEFAULT_SERVER_MODEL} at {self.url}"

    @property
    def identity(self) -> list[str]:
        return [self.url, self.model_name or DEFAULT_SERVER_MODEL]

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until the server has answered; raise ``ModelError`` if it cannot serve."""
        if not self._ready.wait(timeout):
            return False
        if self._error is not None:
            raise self._error
        return True

    def generate(self, messages: Sequence[dict], options=None, chat=None) -> Generation:
        """Start a request on its own thread (``chat`` is the local KV cache: unused)."""
        generation = Generation()
        job = (list(messages), options or GenerationOptions(), generation)
        thread = threading.Thread(target=self._serve, args=job, daemon=True,
                                  name="remote-generation")
        with self._lock:
            self._pending.add(generation)
            self._threads.add(thread)
        thread.start()
        return generation

    def prefill(self, messages, options, chat, *, role: str = "user", progress=None) -> Prefill:
        """Idle prefill is local-only: the server keeps its own cache."""
        handle = Prefill()
        handle.finish("skipped")
        return handle

    def call(self, fn: Callable) -> Any:
        raise ModelError("this needs the model in this process; run it with a local --model "
                         "(a model directory or a Hugging Face repo id)")

    def close(self) -> None:
        with self._lock:
            pending, threads = list(self._pending), list(self._threads)
        for generation in pending:
            generation.cancel()
        for thread in threads:
            thread.join(timeout=5)
        self._client.close()

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the server -----------------------------------------------------------------

    def _check(self) -> None:
        """Ask the server for its models: it is there, the key works, the model exists."""
        o, models = self._openai, []
        try:
            models = [m.id for m in self._client.models.list()]
        except (o.APIConnectionError, o.AuthenticationError, o.PermissionDeniedError) as exc:
            self._error = ModelError(self.describe(exc))
        except Exception:  # no list, or a broken one: chat completions may still work
            pass
        if self._error is None:
            if self.model_name is None:
                self.model_name = models[0] if len(models) == 1 else None
            elif models and self.model_name not in models:
                shown = ", ".join(models[:8]) + (", …" if len(models) > 8 else "")
                self._error = ModelError(
                    f"the server at {self.host} has no model {self.model_name!r} (it has: "
                    f"{shown}); set remote_model in the settings to one of them")
        self._ready.set()

    def describe(self, exc: BaseException) -> str:
        """One line for what went wrong talking to the server, saying what to do."""
        o, where = self._openai, f"the server at {self.url}"
        if isinstance(exc, o.APITimeoutError):
            return (f"{where} sent nothing for {self.timeout:g} s; it may be busy or stuck: "
                    "try again, or raise request_timeout in the settings")
        if isinstance(exc, o.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            why = f" ({_first_line(cause)})" if cause else ""
            return (f"cannot reach {where}{why}: start the server, or fix the address "
                    "(--model http://HOST:PORT/v1)")
        if isinstance(exc, o.AuthenticationError | o.PermissionDeniedError):
            code = exc.status_code
            if self._key_env:
                return (f"{where} refused the API key in ${self._key_env} ({code}); "
                        "check the key")
            return (f"{where} wants an API key ({code}): put it in an environment variable "
                    "and name that variable in api_key_env in the settings")
        if isinstance(exc, o.NotFoundError):
            if "model" in str(exc).lower():
                return (f"{where} has no model {self.model_name or DEFAULT_SERVER_MODEL!r}: "
                        "set remote_model in the settings to a model it serves")
            return (f"{where} has no OpenAI-compatible API there (404); the address "
                    "usually ends in /v1")
        if isinstance(exc, o.RateLimitError):
            return f"{where} is busy (429); try again in a moment"
        if isinstance(exc, o.APIStatusError):
            return (f"{where} failed the request ({exc.status_code}: "
                    f"{_first_line(_server_message(exc))}); see the server's log")
        return f"talking to {where} failed: {_first_line(exc)}"

    def _request(self, messages: list[dict], options, thinking_mode: bool) -> dict:
        sampling = options.thinking_sampling if thinking_mode else options.direct_sampling
        wire = to_wire(messages, thinking_mode=thinking_mode)
        extra: dict[str, Any] = {"chat_template_kwargs": {"enable_thinking": options.thinking},
                                 "top_k": sampling.top_k}
        if sampling.min_p:
            extra["min_p"] = sampling.min_p
        request = {
            "model": self.model_name or DEFAULT_SERVER_MODEL, "messages": wire, "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": options.max_tokens,
            "temperature": sampling.temperature, "top_p": sampling.top_p,
            "extra_body": extra,
        }
        if sampling.presence_penalty:
            request["presence_penalty"] = sampling.presence_penalty
        if options.seed is not None:
            request["seed"] = options.seed
        if options.tools:
            request["tools"] = _defang_json(list(options.tools))
        return request

    def _serve(self, messages: list[dict], options, generation: Generation) -> None:
        try:
            _Stream(self, messages, options, generation).run()
        finally:
            with self._lock:
                self._pending.discard(generation)
                self._threads.discard(threading.current_thread())


class _BrokenOff(Exception):
    pass


class _Stream:
    """One streamed chat completion, turned into the engine's events."""

    def __init__(self, engine: RemoteEngine, messages: list[dict], options,
                 generation: Generation):
        from assistant.engine.split import ANSWER, OutputSplitter

        self.engine, self.messages, self.options = engine, messages, options
        self.generation = generation
        self.splitter = OutputSplitter(_QwenMarkers(), ANSWER)
        self.calls: dict[int, dict] = {}  # streamed tool_calls, by index
        self.reasoning_started = False
        self.generated = self.thinking = 0
        self.usage = None
        self.t_first: float | None = None
        self.t_last: float | None = None
        self._ended = threading.Lock()
        self._over = False

    def emit(self, event) -> None:
        if not self._over:
            self.generation._events.put(event)

    def end(self, event) -> None:
        """The one terminal event (the canceller and the reader may both try)."""
        with self._ended:
            if self._over:
                return
            self.generation._events.put(event)
            self._over = True

    def run(self) -> None:
        engine, generation = self.engine, self.generation
        if generation.cancelled:
            return self.end(Finished("cancelled"))
        try:
            engine.wait_loaded()
        except ModelError as exc:
            return self.end(Failed(str(exc), kind="model"))
        thinking_mode = effective_thinking(self.messages, self.options.thinking)
        estimate = sum(engine.counter.count(str(m.get("content") or ""))
                       for m in self.messages) + 4 * len(self.messages)
        self.emit(PromptReady(estimate, 0))
        started = time.perf_counter()
        stream = None
        try:
            request = engine._request(self.messages, self.options, thinking_mode)
            generation.on_cancel = lambda: self.end(Finished("cancelled"))
            if generation.cancelled:
                return self.end(Finished("cancelled"))
            stream = engine._client.chat.completions.create(**request)
            generation.on_cancel = lambda: (self.end(Finished("cancelled")), stream.close())
            reason = None
            for chunk in stream:
                if generation.cancelled:
                    break
                if chunk.usage is not None:
                    self.usage = chunk.usage
                for choice in chunk.choices:
                    self.choice(choice.delta)
                    if choice.finish_reason:
                        reason = "length" if choice.finish_reason == "length" else "stop"
            if reason is None and not generation.cancelled:
                raise _BrokenOff("the stream ended before the server said it was done")
        except Exception as exc:
            if generation.cancelled:
                return self.end(Finished("cancelled"))
            for event in self.flush():
                self.emit(event)
            message = engine.describe(exc)
            if self.generated:
                message = (f"the server's answer broke off after {self.generated:,} tokens "
                           f"({_first_line(exc)}); what arrived is kept")
            return self.end(Failed(message))
        finally:
            if stream is not None:
                stream.close()
        if generation.cancelled:
            return self.end(Finished("cancelled"))
        for event in self.flush():
            self.emit(event)
        self.emit(self.stats(estimate, started, thinking_mode))
        self.end(Finished(reason))

    def choice(self, delta) -> None:
        now = time.perf_counter()
        extra = delta.model_extra or {}
        reasoning = extra.get("reasoning_content") or extra.get("reasoning")
        pieces = 0
        if reasoning:
            text = reasoning if self.reasoning_started else reasoning.lstrip()
            self.reasoning_started = self.reasoning_started or bool(text)
            if text:
                self.emit(ThinkingDelta(text))
            self.thinking += 1
            pieces += 1
        if delta.content:
            for event in self.splitter.feed(delta.content):
                self.emit(event)
            if self.splitter.thinking:
                self.thinking += 1
            pieces += 1
        for call in delta.tool_calls or ():
            slot = self.calls.setdefault(call.index or 0, {"name": "", "arguments": ""})
            if call.function is not None:
                slot["name"] += call.function.name or ""
                slot["arguments"] += call.function.arguments or ""
            pieces += 1
        if pieces:
            self.generated += 1
            self.t_first = self.t_first or now
            self.t_last = now

    def flush(self) -> list:
        from assistant.engine.split import parse_tool_call

        events = self.splitter.finish()
        for index in sorted(self.calls):
            call = self.calls.pop(index)
            raw = json.dumps({"name": call["name"], "arguments": "\0"}, ensure_ascii=False)
            raw = raw.replace('"\\u0000"', call["arguments"].strip() or "{}")
            events.append(parse_tool_call(raw))
        return events

    def stats(self, estimate: int, started: float, thinking_mode: bool) -> TurnStats:
        usage, first = self.usage, self.t_first or time.perf_counter()
        prompt = getattr(usage, "prompt_tokens", None) or estimate
        details = getattr(usage, "prompt_tokens_details", None)
        cached = min(getattr(details, "cached_tokens", None) or 0, prompt)
        generated = getattr(usage, "completion_tokens", None) or self.generated
        decode_s = (self.t_last - self.t_first) if self.t_first is not None else 0.0
        return TurnStats(
            ttft_s=first - self.generation.submitted,
            prompt_tokens=prompt,
            cached_tokens=cached,
            prompt_tps=(prompt - cached) / max(first - started, 1e-9),
            generated_tokens=generated,
            thinking_tokens=min(self.thinking, generated),
            decode_tps=(generated - 1) / decode_s if generated > 1 and decode_s > 0 else 0.0,
            peak_memory_gb=0.0,  # the server's memory is not ours to see
            thinking_mode=thinking_mode,
        )


def to_wire(messages: Sequence[dict], *, thinking_mode: bool = True) -> list[dict]:
    """The history as OpenAI's chat API takes it: tool calls with ids and JSON-encoded
    arguments, each tool result tied to its call, earlier reasoning left out (the
    template drops it too), and all text defanged."""
    wire: list[dict] = []
    calls: list[str] = []  # ids of the latest assistant message's calls, in order
    answered = 0
    for n, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        out: dict[str, Any] = {"role": role,
                               "content": defang(content) if isinstance(content, str) else ""}
        if role == "assistant":
            calls, answered = [], 0
            for call in message.get("tool_calls") or ():
                function = call.get("function", call)
                calls.append(f"call_{n}_{len(calls)}")
                arguments = function.get("arguments")
                out.setdefault("tool_calls", []).append({
                    "id": calls[-1], "type": "function",
                    "function": {"name": defang(str(function.get("name"))),
                                 "arguments": defang(arguments if isinstance(arguments, str)
                                                     else json.dumps(arguments or {},
                                                                     ensure_ascii=False))}})
        elif role == "tool":
            out["tool_call_id"] = calls[answered] if answered < len(calls) else f"call_{n}"
            answered += 1
            if message.get("name"):
                out["name"] = message["name"]
        wire.append(out)
    if not thinking_mode:
        # Servers that do not take chat_template_kwargs still follow Qwen3's soft switch.
        last = next((m for m in reversed(wire) if m["role"] == "user"), None)
        if last is not None and not re.search(r"/no_think\b", last["content"]):
            last["content"] = f"{last['content']} /no_think"
    return wire


def _server_message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)
    return getattr(exc, "message", None) or str(exc)


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
