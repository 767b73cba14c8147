"""Resources and prompts as the model reads them, for both front ends: what each server
offers, a resource read as text and framed as an attachment, a server's prompt filled in
after its arguments are checked, and whether attached text fits the context window.
Problems are one-line ``UserError``s."""

from __future__ import annotations

import json

from assistant.errors import UserError


def ready(host, name: str):
    """The server's state, if it is up; else one line saying why not and where to look."""
    state = host.servers[name]
    if state.status == "ready":
        return state
    if state.status == "disabled":
        raise UserError(f"MCP server {name!r} is disabled in the config; remove its "
                        "\"disabled\" key to use it")
    from assistant.chat.tooling import server_problems

    line = next(iter(server_problems(host, skip=set(host.servers) - {name})), None)
    raise UserError(line or f"MCP server {name!r} is {state.status}: {state.error}")


def attachment(ref: str, text: str) -> str:
    """A resource's text framed for the model with where it came from. The text cannot
    close the frame early: a closing tag inside it is broken up, so it stays data."""
    inner = text.replace("</resource", "<\\/resource")
    return f"<resource uri={json.dumps(ref, ensure_ascii=False)}>\n{inner}\n</resource>"


def check_fits(engine, counter, messages: list[dict], attached) -> None:
    """Attached text counts against the context window: say so in one line when the
    prompt cannot fit, before any generation. The chat app asks the same before sending."""
    total = sum(counter.count(m["content"]) for m in messages)
    if total < engine.context_window:
        return
    sizes = ", ".join(f"{ref} {counter.count(text):,} tokens" for ref, text in attached)
    raise UserError(f"the attached text does not fit: the prompt is {total:,} tokens "
                    f"({sizes}) for a {engine.context_window:,}-token context window; attach "
                    "less or raise context_limit in the settings")


def read_text(host, server: str, uri: str) -> str:
    """A resource as text for the model: its text parts, binary parts described."""
    from assistant.mcp.host import RequestFailed

    try:
        parts = host.read_resource(server, uri)
    except RequestFailed as exc:
        raise UserError(str(exc)) from None
    return "\n\n".join(p.text if p.text is not None else p.describe() for p in parts)


def prompt_messages(host, server: str, name: str, arguments: dict[str, str]):
    """A server's prompt filled in, after checking the arguments against its own list,
    so a missing or unknown one is named here rather than as a server's error."""
    from assistant.mcp.host import RequestFailed

    try:
        prompts = {p.name: p for p in host.prompts(server)}
        prompt = prompts.get(name)
        if prompt is None:
            raise UserError(f"{server} has no prompt {name!r} (it has: "
                            f"{', '.join(prompts) or 'none'})")
        known = {a.name for a in prompt.arguments}
        unknown = [k for k in arguments if k not in known]
        if unknown:
            raise UserError(f"{server}/{name} takes no argument {unknown[0]!r} (it takes: "
                            f"{', '.join(known) or 'none'})")
        missing = [a.name for a in prompt.arguments if a.required and a.name not in arguments]
        if missing:
            raise UserError(f"{server}/{name} needs {', '.join(f'{m}=…' for m in missing)}"
                            + _suggest(host, server, name, missing[0], arguments))
        return host.get_prompt(server, name, arguments)
    except RequestFailed as exc:
        raise UserError(str(exc)) from None


def _suggest(host, server: str, prompt: str, argument: str, known: dict[str, str]) -> str:
    """A few of the server's completions for a missing argument, if it offers them."""
    from assistant.mcp.host import RequestFailed

    try:
        values = host.complete(server, prompt, argument, "", known)
    except RequestFailed:
        return ""
    if not values:
        return ""
    more = ", …" if len(values) > 5 else ""
    return f" ({argument} could be: {', '.join(values[:5])}{more})"


def listed(host, method: str, single: str | None) -> dict[str, list]:
    """Each ready server's resources or prompts; with one server named, it must be up."""
    from assistant.mcp.host import RequestFailed

    found = {}
    for state in host.servers.values():
        name = state.config.name
        if single is not None:
            ready(host, name)
        elif state.status != "ready":
            continue
        try:
            found[name] = getattr(host, method)(name)
        except RequestFailed as exc:
            if single is not None:
                raise UserError(str(exc)) from None
            found[name] = []
    return found
