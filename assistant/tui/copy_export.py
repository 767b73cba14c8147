"""Getting text out: copy the last answer or code block, export the chat as Markdown."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from assistant.config import paths
from assistant.tui.widgets import AssistantMessage

_CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)


class CopyAndExport:
    """A mixin of ``ChatApp``: the clipboard (OSC 52, pbcopy on macOS) and exports."""

    def _last_answer(self) -> str:
        views = list(self.query(AssistantMessage))
        return views[-1].all_text.strip() if views else ""

    def action_copy_answer(self) -> None:
        self._copy(self._last_answer(), "the last answer")

    def action_copy_code(self) -> None:
        blocks = _CODE_BLOCK.findall(self._last_answer())
        self._copy(blocks[-1] if blocks else "", "the last code block")

    def _copy(self, text: str, what: str) -> None:
        if not text:
            self.notify(f"There is no {what.removeprefix('the ')} to copy.")
            return
        self.copy_to_clipboard(text)  # OSC 52
        if sys.platform == "darwin" and shutil.which("pbcopy"):  # Terminal.app has no OSC 52
            subprocess.run(["pbcopy"], input=text.encode(), check=False)
        self.notify(f"Copied {what}.", timeout=2)

    def action_export(self) -> Path | None:
        if self.chat_id is None:
            self.notify("Nothing to export yet.")
            return None
        out = paths().data_dir / "exports" / f"chat-{self.chat_id}.md"
        text = self._try_store(self.store.export_markdown, self.chat_id)
        if text is None:
            return None
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.notify(f"Cannot write {out}: {exc.strerror or exc}. Make the folder "
                        "writable and export again.", title="Export failed", severity="error")
            return None
        self.notify(str(out), title="Chat exported", timeout=8)
        return out
