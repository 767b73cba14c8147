"""MCP server "clock": the current time in any IANA time zone, and calendar arithmetic on ISO dates.

Run: python -m assistant.tools.clock
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)


def _zone(name: str) -> tzinfo | None:
    """None means the machine's local zone."""
    key = name.strip()
    if key.lower() in ("", "local"):
        return None
    # UTC works even where no tz database is installed.
    if key.upper() in ("UTC", "Z", "GMT", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ToolError(
            f"unknown time zone {name!r}: use an IANA name like 'Europe/Paris' or 'local'"
        ) from None


def _date(value: str, what: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ToolError(f"{what} {value!r} is not an ISO date like 2024-01-31") from None


TimeZone = Annotated[str, Field(description="IANA name like 'Europe/Paris', or 'local'")]


def now(timezone: TimeZone = "local") -> str:
    zone = _zone(timezone)
    moment = datetime.now(zone) if zone else datetime.now().astimezone()
    label = timezone if zone else (moment.tzname() or "local")
    return f"{moment.isoformat(timespec='seconds')} ({moment.strftime('%A')}, {label})"


def date_add(date: str, days: int = 0, weeks: int = 0, months: int = 0, years: int = 0) -> str:
    start = _date(date, "date")
    # Months first, clamped to the target month's last day (Jan 31 + 1 month = Feb 28/29).
    index = start.year * 12 + (start.month - 1) + years * 12 + months
    year, month = divmod(index, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise ToolError("the result is outside the supported years 1..9999")
    day = min(start.day, calendar.monthrange(year, month)[1])
    try:
        result = start.replace(year=year, month=month, day=day) + timedelta(days=days, weeks=weeks)
    except OverflowError:
        raise ToolError("the result is outside the supported years 1..9999") from None
    return result.isoformat()


def days_between(start: str, end: str) -> str:
    return str((_date(end, "end") - _date(start, "start")).days)


def build_server() -> MCPServer:
    server = MCPServer(name="clock")
    server.add_tool(
        now,
        description="Current date and time (ISO 8601) with weekday, in a time zone.",
        annotations=READ_ONLY,
        structured_output=False,
    )
    server.add_tool(
        date_add,
        description="Add days, weeks, months or years (negative to subtract) to an ISO date "
        "(YYYY-MM-DD). Month steps clamp to the month's last day.",
        annotations=READ_ONLY,
        structured_output=False,
    )
    server.add_tool(
        days_between,
        description="Number of days from start to end (ISO dates); negative if end is earlier.",
        annotations=READ_ONLY,
        structured_output=False,
    )
    return server


def main() -> None:
    build_server().run()


if __name__ == "__main__":
    main()
