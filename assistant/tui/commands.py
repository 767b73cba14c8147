"""The command palette (ctrl+p): the app's own commands, most used first and in the order
given, so the ones a new user looks for are on screen without scrolling. Textual's own
provider sorts by name and mixes in Theme, Maximize and Screenshot; this one lists only
what ``ChatApp.get_system_commands`` yields, as it yields it."""

from __future__ import annotations

from textual.command import DiscoveryHit, Hits
from textual.system_commands import SystemCommandsProvider


class AppCommands(SystemCommandsProvider):
    """Searching still matches by name (the inherited ``search``)."""

    async def discover(self) -> Hits:
        for name, help_text, callback, discover in self.app.get_system_commands(self.screen):
            if discover:
                yield DiscoveryHit(name, callback, help=help_text)
