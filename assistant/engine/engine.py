"""The generation thread.

MLX streams belong to the thread that made them, so exactly one long-lived thread
loads the model and runs every generation (the shape of mlx-lm's server). Front ends
submit requests and read a queue of typed events; cancelling sets a flag the thread
checks after every token.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from contextlib import closing
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import mlx.core as mx
from mlx_lm import load, stream_generate
from mlx_lm.models.cache import (KVCache, can_trim_prompt_cache, make_prompt_cache,
                                  trim_prompt_cache)
from mlx_lm.sample_utils import make_logits_processors, make_sampler
from mlx_lm.utils import common_prefix_len

from assistant.engine.adapter import AdapterInfo, check_base, describe_load_error, read_adapter
from assistant.engine.constrain import Grammars, ToolCallGuard
from assistant.engine.events import (Event, Failed, Finished, PromptReady, TextDelta,
                                     ThinkingDelta, ToolCallParsed, TurnStats)
from assistant.engine.generation import (Generation, GenerationOptions, Prefill, TurnResult,
                                         effective_thinking)
from assistant.engine.prefill import PREFILL_STEP, prefill_chunks
from assistant.engine.prompt import PromptEncoder
from assistant.engine.split import REASONING, OutputSplitter, initial_state
from assistant.engine.system_turn import MIN_TOKENS, SystemTurnStore, system_turn_length
from assistant.errors import ModelError
from assistant.tokens import counter_for, tables_kept

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 32768
# What the engine appends when the thinking budget runs out, so the model answers.
BUDGET_CLOSE = "\n</think>\n\n"


class _PrefillCancelled(Exception):
    pass


def _token_counter(model_path: Path):
    try:
        return counter_for(model_path)
    except (OSError, ValueError, KeyError) as exc:
        # Content is encoded as plain text through this counter (see prompt.py), so a
        # model whose tokenizer it cannot read is refused rather than run unguarded.
        raise ModelError(f"cannot read the tokenizer of {model_path} (a byte-level BPE "
                         f"tokenizer.json, as the Qwen3 models have, is needed): {exc}") from exc


class ChatCache:
    """One conversation's KV cache and the token ids it holds, kept between turns."""

    def __init__(self) -> None:
        self.kv: list | None = None
        self.tokens: list[int] = []

    def reset(self) -> None:
        self.kv, self.tokens = None, []

    def reuse(self, model, prompt: list[int], *, leave: int = 1) -> int:
        """Keep the longest cached prefix of ``prompt``, short of its last ``leave``
        tokens; return its length.

        The template drops earlier turns' reasoning, so the cache holds tokens the new
        prompt no longer has: trim back to the common prefix rather than start over.
        """
        if self.kv is None:
            self.kv, self.tokens = make_prompt_cache(model), []
        # A request must feed at least one token to get the next token's logits.
        common = min(common_prefix_len(self.tokens, prompt), len(prompt) - leave)
        excess = len(self.tokens) - common
        if excess:
            if can_trim_prompt_cache(self.kv):
                trim_prompt_cache(self.kv, excess)
            else:
                self.kv, common = make_prompt_cache(model), 0
        del self.tokens[common:]
        return common


@dataclass
class _Job:
    messages: list[dict]
    options: GenerationOptions
    chat: ChatCache
    generation: Generation


@dataclass
class _IdlePrefill:
    messages: list[dict]
    options: GenerationOptions
    chat: ChatCache
    role: str
    handle: Prefill
    progress: Callable[[int, int], None] | None


class Engine:
    """Owns the model and the thread that runs it. Use as a context manager or ``close()``.

    The in-process backend; ``remote.RemoteEngine`` is the other, with the same methods.
    Front ends ask ``local`` before using what only a model in this process can do
    (constrained tool calls, idle prefill, the KV cache, ``call``).
    """

    local = True

    def __init__(self, model_path: Path | str, *, context_limit: int = DEFAULT_CONTEXT,
                 tool_calls: bool = False, adapter: Path | str | None = None,
                 system_turns: Path | None = None):
        """``tool_calls``: tools will be offered with the grammar on, so the grammar's
        view of the vocabulary is built right after loading (while a chat user types)
        rather than when the model first opens a call. ``adapter``: a LoRA or DoRA
        adapter folder to apply on top of the model (see ``adapter.py``).
        ``system_turns``: a folder where the KV cache of long system turns is kept from
        one run to the next (see ``system_turn.py``); None keeps nothing."""
        self.model_path = Path(model_path)
        self.adapter_path = Path(adapter).expanduser() if adapter else None
        self.adapter: AdapterInfo | None = None  # once loaded
        self._prepare_tool_calls = tool_calls
        self._context_limit = context_limit
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._loaded = threading.Event()
        self._load_error: Exception | None = None
        self.model: Any = None
        self.tokenizer: Any = None
        self.prompts: PromptEncoder | None = None
        self._grammars: Grammars | None = None
        self._system_turns_dir = system_turns
        self._system_turns: SystemTurnStore | None = None  # made when a long turn comes
        self.context_window = context_limit
        self._pending: set[Generation] = set()  # queued or running, for close() to cancel
        self._pending_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="mlx-generation", daemon=True)
        self._thread.start()

    # -- front-end side -------------------------------------------------------------

    @property
    def label(self) -> str:
        """The model's short name (and its adapter's), for a status bar."""
        adapter = self.adapter_path.name if self.adapter_path else None
        return f"{self.model_path.name} + {adapter}" if adapter else self.model_path.name

    @property
    def adapter_name(self) -> str | None:
        return self.adapter_path.name if self.adapter_path else None

    @property
    def name(self) -> str:
        """Where the model is, in full (``ask --json`` reports it)."""
        return str(self.model_path)

    @property
    def identity(self) -> list[str]:
        """What makes one model's output differ from another's (for result caches)."""
        identity = [str(self.model_path.resolve()), self._config_sha256()]
        if self.adapter_path:
            weights = self.adapter_path / "adapters.safetensors"
            identity.append(hashlib.sha256(weights.read_bytes() if weights.is_file()
                                           else b"").hexdigest())
        return identity

    def _config_sha256(self) -> str:
        config = self.model_path / "config.json"
        return hashlib.sha256(config.read_bytes() if config.is_file() else b"").hexdigest()

    @property
    def counter(self):
        """The model's token counter (once loaded; built the first time it is asked for)."""
        return self.prompts.counter

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until the model is loaded; raise ``ModelError`` if it could not be."""
        if not self._loaded.wait(timeout):
            return False
        if self._load_error is not None:
            raise self._load_error
        return True

    def generate(self, messages: Sequence[dict], options: GenerationOptions | None = None,
                 chat: ChatCache | None = None) -> Generation:
        """Queue a generation for ``messages``; pass the same ``chat`` across turns to reuse
        its KV cache."""
        generation = Generation()
        with self._pending_lock:
            self._pending.add(generation)
        self._jobs.put(_Job(list(messages), options or GenerationOptions(),
                            chat if chat is not None else ChatCache(), generation))
        return generation

    def prefill(self, messages: Sequence[dict], options: GenerationOptions, chat: ChatCache,
                *, role: str = "user", progress: Callable[[int, int], None] | None = None
                ) -> Prefill:
        """In idle time, bring ``chat``'s cache up to what the next request will start
        with: ``messages`` followed by a message from ``role`` (``"user"`` after a turn,
        ``"tool"`` while a call runs), rendered with ``options``' tools and mode. Any
        request queued meanwhile takes over between two chunks. ``progress(done, total)``
        is called on the generation thread after each chunk."""
        handle = Prefill()
        self._jobs.put(_IdlePrefill(list(messages), options, chat, role, handle, progress))
        return handle

    def call(self, fn: Callable[[Any, Any], Any]) -> Any:
        """Run ``fn(model, tokenizer)`` on the generation thread and return its result
        (for benchmarks and tools that need MLX on the thread that owns the model)."""
        future: Future = Future()
        self._jobs.put((fn, future))
        return future.result()

    def close(self) -> None:
        """Cancel what is queued or running, then stop the thread (it releases MLX)."""
        with self._pending_lock:
            for generation in self._pending:
                generation.cancel()
        self._jobs.put(None)
        self._thread.join()
        while not self._jobs.empty():  # queued after the end: nobody will run them
            job = self._jobs.get()
            if isinstance(job, _IdlePrefill):
                job.handle.finish("skipped")

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- generation thread ----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._load()
            if self._prepare_tool_calls and self._load_error is None:
                self._grammars.vocabulary()
            while (job := self._jobs.get()) is not None:
                if isinstance(job, tuple):
                    self._call(*job)
                elif isinstance(job, _IdlePrefill):
                    self._prefill_idle(job)
                else:
                    self._serve(job)
        finally:
            # A thread that used MLX must release its streams, or the process can
            # abort at exit ("terminate called without an active exception").
            mx.synchronize()
            mx.clear_streams()

    def _load(self) -> None:
        try:
            adapter = read_adapter(self.adapter_path) if self.adapter_path else None
            if adapter is not None:
                check_base(adapter, self.model_path, self._config_sha256())
            self.model, self.tokenizer, config = load(str(self.model_path), return_config=True)
            if adapter is not None:
                from mlx_lm.tuner.utils import load_adapters  # 50 ms: only when used

                try:
                    load_adapters(self.model, str(adapter.path))
                except Exception as exc:
                    raise ModelError(describe_load_error(adapter, exc)) from None
                self.model.eval()
                self.adapter = adapter
            self.prompts = PromptEncoder(self.tokenizer,
                                         partial(_token_counter, self.model_path))
            if not tables_kept(self.model_path):
                # The first run reads tokenizer.json now, so a model whose tokenizer the
                # counter cannot read is refused at once; later runs build it on demand.
                self.prompts.counter
            newline = self.tokenizer.encode("\n", add_special_tokens=False)
            self._grammars = Grammars(lambda: self.prompts.counter,
                                      config.get("vocab_size") or len(self.tokenizer.get_vocab()),
                                      self.prompts.special_ids, newline[0] if newline else -1)
            window = config.get("max_position_embeddings") or self._context_limit
            self.context_window = min(window, self._context_limit)
        except ModelError as exc:
            self._load_error = exc
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._load_error = ModelError(f"cannot load the model in {self.model_path}: {first}")
        finally:
            self._loaded.set()

    def _call(self, fn: Callable, future: Future) -> None:
        try:
            if self._load_error is not None:
                raise self._load_error
            future.set_result(fn(self.model, self.tokenizer))
        except BaseException as exc:
            future.set_exception(exc)

    def _prefill_idle(self, job: _IdlePrefill) -> None:
        handle, chat = job.handle, job.chat

        def busy() -> bool:  # anything queued is real work (or the end): it goes first
            return handle.cancelled or not self._jobs.empty()

        if self._load_error is not None or busy():
            handle.finish("skipped" if self._load_error is not None
                          else "cancelled" if handle.cancelled else "yielded")
            return
        try:
            target = self.prompts.next_prefix(job.messages, job.role, tools=job.options.tools,
                                              enable_thinking=job.options.thinking)
        except Exception:  # the request itself will report what is wrong with the history
            handle.finish("failed")
            return
        handle.target = len(target)
        if len(target) >= self.context_window:
            handle.finish("skipped")
            return
        try:
            outcome, computed = self._start_from_system_turn(chat, target, stop=busy)
            if outcome == "yielded":
                handle.finish("cancelled" if handle.cancelled else "yielded")
                return
            handle.cached = chat.reuse(self.model, target, leave=0) - computed
            outcome = prefill_chunks(self.model, chat, target, stop=busy,
                                     progress=job.progress)
        except Exception:
            chat.reset()  # the cache may hold half a chunk
            handle.finish("failed")
            return
        handle.prefilled = len(chat.tokens) - handle.cached
        if outcome == "yielded" and handle.cancelled:
            outcome = "cancelled"
        handle.finish(outcome)

    def _start_from_system_turn(self, chat: ChatCache, prompt: list[int], *,
                                stop: Callable[[], bool], chunk: int | None = None
                                ) -> tuple[str | None, int]:
        """A fresh chat whose prompt opens with a long system turn starts from that
        turn's saved KV cache; if none is saved, the turn is prefilled on its own (in
        ``chunk``s, see ``prefill_chunks``) and saved for the next run. Returns
        ``prefill_chunks``'s outcome (None if nothing was prefilled) and the tokens
        computed here, which the caller does not count as found in the cache."""
        found = self._system_turn_store(chat, prompt)
        if found is None:
            return None, 0
        store, turn = found
        if (kv := store.load(self.model, turn)) is not None:
            chat.kv, chat.tokens = kv, list(turn)
            return None, 0
        chat.reuse(self.model, turn, leave=0)
        outcome = prefill_chunks(self.model, chat, turn, stop=stop, chunk=chunk)
        if outcome == "done":
            store.save(chat.kv, turn)
        return outcome, len(chat.tokens)

    def _system_turn_store(self, chat: ChatCache, prompt: list[int]
                           ) -> tuple[SystemTurnStore, list[int]] | None:
        """The store and the turn's ids, if this chat can start from a saved system
        turn: it is fresh, its prompt opens with a long one, and the model's cache is
        plain ``KVCache`` layers (a hybrid model's recurrent state cannot be cut at the
        turn's end)."""
        if self._system_turns_dir is None or chat.tokens:
            return None
        length = system_turn_length(prompt, self.prompts.special_ids, self.prompts.token_bytes)
        if length < MIN_TOKENS or length >= len(prompt):
            return None
        if self._system_turns is None:
            if not all(type(c) is KVCache for c in make_prompt_cache(self.model)):
                self._system_turns_dir = None
                return None
            self._system_turns = SystemTurnStore(self._system_turns_dir, self.identity)
        return self._system_turns, prompt[:length]

    def _serve(self, job: _Job) -> None:
        emit = job.generation._events.put
        try:
            if self._load_error is not None:  # requests queued before loading failed
                emit(Failed(str(self._load_error), kind="model"))
                return
            self._run_turn(job)
        except _PrefillCancelled:
            job.chat.reset()  # the cache holds part of the prompt
            emit(Finished("cancelled"))
        except Exception as exc:
            job.chat.reset()  # the cache may hold half a step
            emit(Failed(f"generation failed: {exc}"))
        finally:
            with self._pending_lock:
                self._pending.discard(job.generation)

    def _guard(self, opts: GenerationOptions, *, reasoning: bool) -> ToolCallGuard | None:
        """The tool-call grammar for this turn's tools, or None: not asked for, or not
        possible (then the turn runs unconstrained, as the turn loop can repair)."""
        if not (opts.tools and opts.constrain_tool_calls):
            return None
        try:
            return ToolCallGuard(self._grammars, opts.tools, reasoning=reasoning)
        except Exception as exc:  # llguidance refused the whole tool set
            log.warning("tool calls run unconstrained this turn: %s", exc)
            return None

    def _without_cut_character(self, text: str, tokens: list[int]) -> str:
        """Drop the U+FFFD that stands for a character the token limit cut in half."""
        tail = self.prompts.token_bytes(tokens[-4:])
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        decoder.decode(tail, final=False)
        pending, _ = decoder.getstate()
        return text[:-1] if pending and text.endswith("\ufffd") else text

    def _run_turn(self, job: _Job) -> None:
        emit = job.generation._events.put
        opts, tokenizer, chat = job.options, self.tokenizer, job.chat
        if job.generation.cancelled:
            emit(Finished("cancelled"))
            return
        prompt = self.prompts.encode(job.messages, tools=opts.tools,
                                     enable_thinking=opts.thinking)
        if len(prompt) >= self.context_window:
            emit(Failed(f"the conversation is {len(prompt):,} tokens, more than the "
                        f"{self.context_window:,}-token context window; start a new chat "
                        "or shorten the prompt", kind="context"))
            return
        max_tokens = min(opts.max_tokens, self.context_window - len(prompt))

        # The model follows the soft switches; sample as the mode it will be in.
        thinking_mode = effective_thinking(job.messages, opts.thinking)
        sampling = opts.thinking_sampling if thinking_mode else opts.direct_sampling
        sampler = make_sampler(temp=sampling.temperature, top_p=sampling.top_p,
                               min_p=sampling.min_p, top_k=sampling.top_k)
        processors = make_logits_processors(presence_penalty=sampling.presence_penalty or None)
        guard = self._guard(opts, reasoning=initial_state(tokenizer, prompt) == REASONING)
        processors += ([guard] if guard else []) + list(opts.logits_processors)
        if opts.seed is not None:
            mx.random.seed(opts.seed)
        mx.reset_peak_memory()

        def stop_prefill(done: int, total: int) -> None:
            # Called between prefill chunks: a long prompt can be cancelled too.
            if job.generation.cancelled and done < total:
                raise _PrefillCancelled

        t_start = time.perf_counter()
        outcome, computed = self._start_from_system_turn(
            chat, prompt, stop=lambda: job.generation.cancelled, chunk=PREFILL_STEP)
        if outcome == "yielded":
            raise _PrefillCancelled
        reused = chat.reuse(self.model, prompt)
        cached = reused - computed  # what this request found ready, for the figures
        emit(PromptReady(len(prompt), cached))
        splitter = OutputSplitter(tokenizer, initial_state(tokenizer, prompt))
        markers = self.prompts.marker_ids
        feed = prompt[reused:]
        generated = thinking = 0
        reason: str | None = None
        t_first = t_last = None
        while reason is None:
            chat.tokens.extend(feed)
            budget_hit = False
            if guard is not None:
                guard.begin(len(feed), max_tokens - generated,
                            reasoning=False if generated else None)
            stream = stream_generate(self.model, tokenizer, mx.array(feed),
                                     max_tokens=max_tokens - generated, sampler=sampler,
                                     logits_processors=processors, prompt_cache=chat.kv,
                                     prompt_progress_callback=stop_prefill)
            with closing(stream):
                for response in stream:
                    t_last = time.perf_counter()
                    if t_first is None:
                        t_first = t_last
                    # Every yielded token is already in the KV cache.
                    chat.tokens.append(response.token)
                    generated += 1
                    if guard is not None:
                        guard.observe(response.token)
                    text = response.text
                    if response.finish_reason == "length":
                        text = self._without_cut_character(text, chat.tokens)
                    events = splitter.feed(text, control=response.token in markers)
                    if response.finish_reason:
                        reason = response.finish_reason
                    elif job.generation.cancelled:
                        reason = "cancelled"
                    if reason:
                        events += splitter.finish()
                    for event in events:
                        if guard is not None and isinstance(event, ToolCallParsed):
                            event = replace(event, constrained=guard.last_call_constrained)
                        emit(event)
                    if reason:
                        break
                    if splitter.thinking:
                        thinking += 1
                        if opts.thinking_budget is not None and thinking >= opts.thinking_budget:
                            budget_hit = True
                            break
            if budget_hit:
                for event in splitter.feed(BUDGET_CLOSE):
                    emit(event)
                feed = tokenizer.encode(BUDGET_CLOSE, add_special_tokens=False)
                if generated >= max_tokens:
                    reason = "length"

        decode_s = (t_last - t_first) if t_first is not None else 0.0
        emit(TurnStats(
            ttft_s=(t_first or t_start) - job.generation.submitted,
            prompt_tokens=len(prompt),
            cached_tokens=cached,
            prompt_tps=(len(prompt) - cached) / max((t_first or t_start) - t_start, 1e-9),
            generated_tokens=generated,
            thinking_tokens=thinking,
            decode_tps=(generated - 1) / decode_s if generated > 1 and decode_s > 0 else 0.0,
            peak_memory_gb=mx.get_peak_memory() / 1e9,
            thinking_mode=thinking_mode,
        ))
        emit(Finished(reason))
