"""Resources and prompts in the chat app: ``@`` attaches a server's resource to the next
message, ``/`` lists the commands and the servers' prompts, a prompt's form fills it in.
Pilot over the real engine with scripted output and tests/servers/library.py over stdio."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
from mcp_helpers import features, library, raw
from scripted import Rounds, Script
from test_tui import app_for, running, until
from test_turn import call

from assistant.chat.store import ChatStore
from assistant.mcp.approval import ApprovalStore
from assistant.chat.resources import attachment
from assistant.tui.mcp_screens import FormScreen, PickerScreen
from assistant.tui.widgets import AttachmentChip, ToolCard, UserMessage

pytestmark = pytest.mark.asyncio

README = "The library keeps three shelves: poems, recipes and maps."


async def picker(pilot) -> PickerScreen:
    """The picker, once the servers have answered (it opens at once, then fills in)."""
    await until(pilot, lambda: isinstance(pilot.app.screen, PickerScreen)
                and pilot.app.screen.shown
                and getattr(pilot.app.screen, "waiting", None) is None)
    return pilot.app.screen


async def pick(pilot, key: str, query: str) -> None:
    """Open a picker with its key in the input, narrow it down, take the first row."""
    await pilot.press(key)
    screen = await picker(pilot)
    await pilot.press(*query)
    await until(pilot, lambda: len(screen.shown) >= 1 and all(
        w in screen.shown[0].search for w in query.lower().split()))
    await pilot.press("enter")


def chips(app) -> list[str]:
    return [chip.ref for chip in app.query(AttachmentChip)]


async def turn_done(pilot) -> None:
    app = pilot.app
    await until(pilot, lambda: app.chat_id is not None and not app.busy)
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_at_attaches_a_resource_that_goes_with_the_next_message(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Three shelves."), servers=[library()])
    async with running(app) as pilot:
        await pick(pilot, "@", "readme")
        await until(pilot, lambda: chips(app) == ["library:library://readme"])
        chip = app.query_one(AttachmentChip)
        tokens = app.attachments[0].tokens
        assert tokens and f"· {tokens:,} tokens" in str(chip.label)
        await pilot.press(*"What is in it?", "enter")
        await turn_done(pilot)
        sent = attachment("library:library://readme", README) + "\n\nWhat is in it?"
        assert ChatStore().history(app.chat_id)[0] == {"role": "user", "content": sent}
        assert app.history[0]["content"] == sent  # what the engine was given
        assert chips(app) == [] and not app.query_one("#attachments").display
        shown = str(list(app.query(UserMessage))[-1].render())
        assert "What is in it?" in shown and "library:library://readme" in shown


async def test_a_chip_comes_off_and_binary_is_described(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "A logo."), servers=[library()])
    async with running(app) as pilot:
        await pick(pilot, "@", "readme")
        await until(pilot, lambda: chips(app) == ["library:library://readme"])
        await pilot.press(*"Look ")
        await pick(pilot, "@", "logo")  # @ after a space starts a word too
        await until(pilot, lambda: len(chips(app)) == 2)
        await pilot.click(AttachmentChip)  # the first chip: readme comes off
        await until(pilot, lambda: chips(app) == ["library:library://logo.png"])
        assert app.input.text == "Look "
        await pilot.press("enter")
        await turn_done(pilot)
        content = ChatStore().history(app.chat_id)[0]["content"]
        assert "[binary resource library://logo.png: image/png, 1,032 bytes]" in content
        assert "PNG" not in content and README not in content


async def test_at_inside_a_word_is_typed_and_esc_types_it_back(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Ok."), servers=[library()])
    async with running(app) as pilot:
        await pilot.press(*"ann@example.org")
        assert app.input.text == "ann@example.org" and not isinstance(app.screen,
                                                                       PickerScreen)
        await pilot.press("space", "@")
        await picker(pilot)
        await pilot.press("escape")
        await until(pilot, lambda: app.input.text == "ann@example.org @")


async def test_a_template_asks_for_its_variables(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Maps."), servers=[library()])
    async with running(app) as pilot:
        await pick(pilot, "@", "shelf")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        await pilot.press(*"maps", "enter")
        await until(pilot, lambda: chips(app) == ["library:library://shelf/maps"])
        assert app.attachments[0].text == "Books on the maps shelf: one, two, three."
        await pick(pilot, "@", "shelf")  # a shelf the server does not have: a notice
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        await pilot.press(*"attic", "enter")
        await until(pilot, lambda: any("attic" in n.message for n in app._notifications))
        assert chips(app) == ["library:library://shelf/maps"]


async def test_too_much_attached_text_is_refused_and_the_message_kept(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Never said."), servers=[library()])
    async with running(app) as pilot:
        await pick(pilot, "@", "big")
        await until(pilot, lambda: chips(app) == ["library:library://big"])
        await pilot.press(*"Summarize it", "enter")
        await until(pilot, lambda: any(n.title == "Not sent" for n in app._notifications))
        (notice,) = [n for n in app._notifications if n.title == "Not sent"]
        assert "does not fit" in notice.message and "library:library://big" in notice.message
        assert app.input.text == "Summarize it" and chips(app) == ["library:library://big"]
        assert app.chat_id is None and app.history == [] and not app.busy


async def test_slash_lists_commands_and_prompts(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Ok."), servers=[library()])
    async with running(app) as pilot:
        await pilot.press("/")
        screen = await picker(pilot)
        names = [c.columns[0] for c in screen.shown]
        assert names[:3] == ["/think", "/no_think", "/summarize"]
        assert {"/poem", "/hello"} <= set(names)
        await pilot.press(*"no_")
        await until(pilot, lambda: [c.columns[0] for c in screen.shown] == ["/no_think"])
        await pilot.press("enter")  # a built-in command is typed into the input
        await until(pilot, lambda: app.input.text == "/no_think ")
        app.input.text = ""
        await pilot.press("/")
        await picker(pilot)
        await pilot.press("escape")  # nothing picked: the slash is typed after all
        await until(pilot, lambda: app.input.text == "/")


async def test_a_prompt_form_fills_the_prompt_and_runs_the_turn(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Rain on the sea."), servers=[library()])
    async with running(app) as pilot:
        await pick(pilot, "/", "poem")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        form = app.screen
        texts = [str(s.render()) for s in form.query("Static")]
        assert any("could be: haiku, limerick, sonnet" in t for t in texts)
        assert any("could be: rain, the sea" in t for t in texts)
        await pilot.press("tab")  # the required topic left empty: not sent
        await pilot.click("#form-send")
        await pilot.pause()
        assert app.screen is form and "topic is required" in str(
            form.query_one("#form-problem").render())
        form.query_one("#form-0").focus()
        await pilot.press(*"rain", "enter", *"so", "right", "enter")  # → takes "sonnet"
        await turn_done(pilot)
        assert ChatStore().history(app.chat_id) == [
            {"role": "user", "content": "Write a sonnet about rain."},
            {"role": "assistant", "content": "Rain on the sea."}]
        assert str(list(app.query(UserMessage))[-1].render()) == "/poem topic=rain style=sonnet"


async def test_a_prompt_without_arguments_runs_at_once(engine, hf_tokenizer):
    app = app_for(engine, Script(hf_tokenizer, "Hello, reader."), servers=[library()])
    async with running(app) as pilot:
        await pick(pilot, "/", "hello")
        await turn_done(pilot)
        assert ChatStore().history(app.chat_id)[0] == {"role": "user",
                                                       "content": "Say hello to the reader."}


async def test_a_tool_cards_resource_link_can_be_attached(engine, hf_tokenizer):
    ApprovalStore().set("features", "map_picture", "always")
    app = app_for(engine, Rounds(hf_tokenizer, call("map_picture"), "Here it is.",
                                 "North of the mill."), servers=[features()])
    async with running(app) as pilot:
        app.input.text = "Show me the map"
        await pilot.press("enter")
        await turn_done(pilot)
        card = list(app.query(ToolCard))[-1]
        await until(pilot, lambda: card.query("#attach-links"))
        assert str(card.query_one("#attach-links").label) == "Attach the linked resource"
        await pilot.click("#attach-links")
        await until(pilot, lambda: chips(app) == ["features:library://maps/full"])
        await pilot.press(*"Where is the river?", "enter")
        await until(pilot, lambda: len(ChatStore().history(app.chat_id)) > 3 and not app.busy)
        await app.workers.wait_for_complete()
        asked = [m for m in ChatStore().history(app.chat_id) if m["role"] == "user"][-1]
        assert asked["content"] == attachment(
            "features:library://maps/full",
            "The full map: the river runs north of the mill.") + "\n\nWhere is the river?"


async def test_the_tools_screen_and_the_palette_open_the_pickers(engine, hf_tokenizer):
    from assistant.tui.screens import ToolsScreen

    app = app_for(engine, Script(hf_tokenizer, "Ok."), servers=[library()])
    async with running(app) as pilot:
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, ToolsScreen))
        await pilot.press("a")
        screen = await picker(pilot)
        assert {c.columns[2] for c in screen.shown} >= {"library://readme",
                                                         "library://shelf/{name}"}
        await pilot.press("escape")  # from the tools screen nothing is typed back
        await until(pilot, lambda: not isinstance(app.screen, PickerScreen))
        assert app.input.text == ""
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Attach a resource", "Use a prompt"} <= titles
        await app.action_use_prompt()
        screen = await picker(pilot)
        assert "/poem" in [c.columns[0] for c in screen.shown]


async def test_markup_in_a_servers_names_stays_text(engine, hf_tokenizer):
    """Names and URIs come from servers: markup in them is shown, never obeyed, in the
    picker and on a chip; Delete on a focused chip takes it off."""
    from assistant.mcp.toolinfo import ResourceInfo
    from assistant.tui.mcp_screens import resource_choices
    from assistant.tui.mcp_use import Attachment

    evil = "x://[@click=app.quit]/[b]"
    app = app_for(engine, Script(hf_tokenizer, "Ok."))
    async with running(app) as pilot:
        app.push_screen(PickerScreen("Attach a resource", resource_choices(
            [ResourceInfo("evil", evil, "[bold red]name[/]", "", None, None)]),
            widths=(9, 20, 30)))
        screen = await picker(pilot)
        row = str(screen.query_one("#picker-list").get_option_at_index(0).prompt)
        assert "[bold red]name[/]" in row and "[@click=app.quit]" in row
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, PickerScreen))
        assert app.is_running
        app.attachments = [Attachment("evil", evil, "text", 1)]
        await app._show_chips()
        chip = app.query_one(AttachmentChip)
        assert str(chip.label) == f"evil:{evil} · 1 tokens ×"
        chip.focus()
        await pilot.press("delete")
        await until(pilot, lambda: chips(app) == [] and app.attachments == [])


async def test_templates_expand_as_rfc_6570_says():
    from assistant.tui.mcp_screens import fill_template, template_fields

    template = "notes:///{+path}{?q,lang}"
    assert [f.name for f in template_fields(template)] == ["path", "q", "lang"]
    assert fill_template(template, {"path": "a/b c", "q": "x y"}) == "notes:///a/b%20c?q=x%20y"
    assert fill_template("library://shelf/{name}", {"name": "a/b"}) == "library://shelf/a%2Fb"
    with pytest.raises(ValueError):
        template_fields("library://shelf/{name")


# -- a server that answers late: the app never waits on it ----------------------------


def waiting_line(screen: PickerScreen) -> str:
    options = screen.query_one("#picker-list")
    return str(options.get_option_at_index(options.option_count - 1).prompt)


@asynccontextmanager
async def slow_app(engine, hf_tokenizer, gate):
    """The app with one server, tests/servers/raw.py "slowlists": it lists its resources
    and prompts only once ``gate`` exists, and reads only once ``gate``.read exists.
    Yields the app's pilot; at the end both gates open, whatever happened, so the server
    answers and the app can close."""
    app = app_for(engine, Script(hf_tokenizer, "Ok."),
                  servers=[raw("slowlists", "slow", str(gate))])
    try:
        async with running(app) as pilot:
            yield pilot
    finally:
        gate.touch()
        gate.with_name(gate.name + ".read").touch()


async def test_a_slow_server_never_holds_the_keys_while_at_waits(engine, hf_tokenizer,
                                                                 tmp_path):
    gate = tmp_path / "gate"
    async with slow_app(engine, hf_tokenizer, gate) as pilot:
        app = pilot.app
        await pilot.press("@")  # the server has not answered: the picker says so
        await until(pilot, lambda: isinstance(app.screen, PickerScreen))
        screen = app.screen
        await until(pilot, lambda: "Asking the servers for their resources"
                    in waiting_line(screen))
        await pilot.press(*"note")  # keys still work: the filter takes them
        await until(pilot, lambda: screen.query_one("#picker-filter").value == "note")
        await pilot.press("escape")  # Esc gives up on the answer; the @ is typed
        await until(pilot, lambda: not isinstance(app.screen, PickerScreen)
                    and app.input.text == "@")
        await pilot.press(*"still typing")
        await until(pilot, lambda: app.input.text == "@still typing")
        app.input.text = ""
        gate.touch()
        (tmp_path / "gate.read").touch()
        await pilot.press("@")  # a fresh @ once the server answers lists its resources
        screen = await picker(pilot)
        assert [c.columns[2] for c in screen.shown] == ["raw://note"]
        await pilot.press("enter")
        await until(pilot, lambda: chips(app) == ["slow:raw://note"])
        assert app.attachments[0].text == "A note, read at once."


async def test_slash_offers_the_commands_while_the_prompts_are_asked(engine, hf_tokenizer,
                                                                     tmp_path):
    gate = tmp_path / "gate"
    async with slow_app(engine, hf_tokenizer, gate) as pilot:
        app = pilot.app
        await pilot.press("/")
        await until(pilot, lambda: isinstance(app.screen, PickerScreen)
                    and len(app.screen.shown) == 3)
        screen = app.screen
        assert [c.columns[0] for c in screen.shown] == ["/think", "/no_think",
                                                        "/summarize"]
        await until(pilot, lambda: "Asking the servers for their prompts"
                    in waiting_line(screen))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, PickerScreen)
                    and app.input.text == "/")
        app.input.text = ""
        gate.touch()
        await pilot.press("/")
        screen = await picker(pilot)
        assert "/note" in [c.columns[0] for c in screen.shown]
        assert "Asking" not in waiting_line(screen)


async def test_esc_gives_up_on_a_slow_read_and_its_late_answer(engine, hf_tokenizer,
                                                                tmp_path):
    from assistant.tui.widgets import StatusBar

    gate = tmp_path / "gate"
    gate.touch()  # it lists at once, but reads only once gate.read exists
    async with slow_app(engine, hf_tokenizer, gate) as pilot:
        app = pilot.app
        bar = lambda: str(app.query_one(StatusBar).render())  # noqa: E731
        await pick(pilot, "@", "note")
        await until(pilot, lambda: "reading slow:raw://note" in bar())
        await pilot.press(*"Meanwhile")  # the input takes keys while the read waits
        await until(pilot, lambda: app.input.text == "Meanwhile")
        await pilot.press("escape")
        await until(pilot, lambda: "reading" not in bar())
        assert app.input.text == "Meanwhile" and chips(app) == []
        app.input.text = ""
        (tmp_path / "gate.read").touch()
        await pick(pilot, "@", "note")  # asked after the first: answered after it
        await until(pilot, lambda: chips(app) == ["slow:raw://note"])
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert chips(app) == ["slow:raw://note"] and len(app.attachments) == 1
