"""``/summarize PATH`` in the chat: the notes summarizer on a worker, its progress in the
status bar, its Markdown as the answer."""

from __future__ import annotations

import time
from pathlib import Path

from textual import work

from assistant.tui.bridge import _Bridge


class Summaries:
    """A mixin of ``ChatApp``."""

    async def _summarize(self, text: str) -> None:
        args = text.split(maxsplit=1)
        if len(args) < 2:
            self.notify("Usage: /summarize PATH", title="Summarize")
            return
        from assistant.notes.summarize import summarize

        message = {"role": "user", "content": text}
        if not await self._save_user_message(message):
            return
        self.history.append(message)
        view = await self._begin(text)
        self._run_summary(view, self.chat_id, summarize, Path(args[1]).expanduser())

    def _summary_progress(self, done: int, total: int, speed: float, name: str) -> None:
        """Which note, how many are done, and (from the status bar's tick) the seconds
        spent: a summary takes minutes on a big folder and shows nothing until the end."""
        if self.status.busy_since is None:
            self.status.busy_since = time.monotonic()
        self._set_busy("writing the digest" if done == total and total
                       else f"summarizing {name} ({done}/{total} done)")

    @work(thread=True, exit_on_error=False, group="turn")
    def _run_summary(self, view, chat_id: int, summarize, path: Path) -> None:
        bridge = _Bridge(self, view, chat_id)
        note = None
        try:
            if not self._wait_for(self._engine_ready):
                return
            if self._engine_error:
                note = "The model is not loaded; see the panel above."
                return
            from assistant.notes.summarize import SummaryOptions

            # Non-thinking, as on the command line; injected logits processors apply too.
            options = SummaryOptions(
                logits_processors=self.overrides.get("logits_processors", ()))
            result = summarize(self.engine, [path], count=self._token_counter().count,
                               settings=self.settings, options=options, cancel=self._stop,
                               on_progress=lambda *a: self._ui(self._summary_progress, *a))
            bridge._put("say", result.markdown)
            bridge.on_message({"role": "assistant", "content": result.markdown})
        except Exception as exc:
            note = f"⚠ summarizing failed: {exc}"
        finally:
            stopped = self._stop.is_set()
            bridge.end("⏹ stopped" if stopped and not note else note)
            self._idle.set()
