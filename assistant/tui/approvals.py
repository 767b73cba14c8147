"""A tool call waiting for the user: the approval modal and a server's question
(elicitation), asked from the turn's worker and answered on the UI thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from assistant.tui.screens import ApprovalScreen, ElicitScreen


@dataclass
class _Approval:
    done: threading.Event
    choice: str = "deny"


class Approvals:
    """A mixin of ``ChatApp``: the callbacks the turn's tools and the MCP host call."""

    def _approve(self, request) -> str:
        """The approval callback, on the turn's worker: show the modal, wait for the user."""
        approval = self._approval = _Approval(threading.Event())
        tool = request.tool

        def ask() -> None:
            def answered(choice: str | None) -> None:
                approval.choice = choice or "deny"
                approval.done.set()

            self.push_screen(ApprovalScreen(tool.server, tool.name, request.arguments,
                                            read_only=tool.read_only,
                                            description=tool.description), answered)

        self._ui(ask)
        while not approval.done.wait(0.05):
            if self._stop.is_set() or self._shutting_down.is_set():
                self._ui(self._dismiss_approval)
                approval.choice = "deny"
                break
        self._approval = None
        return approval.choice

    def _elicit(self, request, given_up: threading.Event):
        """A server's question during a call, on a worker: show the form, wait for the
        user; the call's time limit, Esc and quitting take the form down (cancel)."""
        from assistant.mcp.elicit import CANCEL

        done, answer = threading.Event(), [CANCEL]

        def answered(choice) -> None:
            answer[0] = choice or CANCEL
            done.set()

        self._ui(lambda: self.push_screen(ElicitScreen(request), answered))
        while not done.wait(0.05):
            if given_up.is_set() or self._stop.is_set() or self._shutting_down.is_set():
                self._ui(lambda: isinstance(self.screen, ElicitScreen)
                         and self.screen.dismiss(CANCEL))
                break
        return answer[0]

    def _dismiss_approval(self) -> None:
        if isinstance(self.screen, ApprovalScreen):
            self.screen.dismiss("deny")
