"""OAuth 2.1 for remote (Streamable HTTP) MCP servers, through the SDK's own client.

The SDK's ``OAuthClientProvider`` does discovery (protected-resource and authorization
server metadata), dynamic client registration, PKCE, resource indicators and refresh; this
module gives it what it leaves to the application: somewhere to keep the tokens, a
loopback listener for the redirect, and a rule that only ``assistant tools login`` may
start a browser flow. Everywhere else a server that wants a login is one line naming the
command, never a browser opening unasked.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import (AuthorizationCodeResult, OAuthClientInformationFull,
                             OAuthClientMetadata, OAuthMetadata, OAuthToken,
                             ProtectedResourceMetadata)

from assistant.config import paths

LOGIN_WAIT = 300.0  # seconds the loopback listener waits for the browser


class LoginNeeded(Exception):
    """The server wants a login that only ``assistant tools login`` may run."""


def login_line(name: str) -> str:
    return f"MCP server '{name}' needs you to log in: run assistant tools login {name}"


def token_dir() -> Path:
    return paths().config_dir / "oauth"


def token_file(name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"
    return token_dir() / f"{safe}.json"


class FileTokenStorage:
    """The SDK's ``TokenStorage``: one JSON file per server (tokens, the registered client
    and when the access token runs out), written 0600 from the start so no other user
    can read it even for a moment. A broken file counts as no login."""

    def __init__(self, name: str):
        self.path = token_file(name)

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    async def get_tokens(self) -> OAuthToken | None:
        raw = self._read().get("tokens")
        try:
            return OAuthToken.model_validate(raw) if raw else None
        except ValueError:
            return None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        data = self._read()
        data["tokens"] = tokens.model_dump(mode="json", exclude_none=True)
        # ``expires_in`` counts from when the token was issued; keep the moment itself,
        # or a token read back in a later run would look valid for ever and not refresh
        data["expires_at"] = time.time() + tokens.expires_in if tokens.expires_in else None
        self._write(data)

    def expires_at(self) -> float | None:
        value = self._read().get("expires_at")
        return float(value) if isinstance(value, (int, float)) else None

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        raw = self._read().get("client")
        try:
            return OAuthClientInformationFull.model_validate(raw) if raw else None
        except ValueError:
            return None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        data = self._read()
        data["client"] = client_info.model_dump(mode="json", exclude_none=True)
        self._write(data)

    def remember_servers(self, context) -> None:
        """Keep what discovery found at login (the authorization server's metadata and
        the resource's), so that a later run refreshes at the real token endpoint with
        the right resource indicator, not a guess from the MCP server's origin."""
        data = self._read()
        for key, value in (("as_metadata", context.oauth_metadata),
                           ("resource_metadata", context.protected_resource_metadata)):
            if value is not None:
                data[key] = value.model_dump(mode="json", exclude_none=True)
        if context.auth_server_url:
            data["auth_server_url"] = context.auth_server_url
        self._write(data)

    def restore_servers(self, context) -> None:
        data = self._read()
        try:
            if data.get("as_metadata"):
                context.oauth_metadata = OAuthMetadata.model_validate(data["as_metadata"])
            if data.get("resource_metadata"):
                context.protected_resource_metadata = ProtectedResourceMetadata.model_validate(
                    data["resource_metadata"])
        except ValueError:  # a broken record: discovery runs again on the next 401
            context.oauth_metadata = context.protected_resource_metadata = None
        if isinstance(data.get("auth_server_url"), str):
            context.auth_server_url = data["auth_server_url"]

    def forget(self) -> bool:
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False


class Provider(OAuthClientProvider):
    """The SDK's provider, which refuses to start a browser flow unless asked to: when the
    server answers 401 and no refresh helps, a non-interactive provider raises
    ``LoginNeeded`` (and sets ``login_needed``) before any registration or redirect."""

    def __init__(self, *args, interactive: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.interactive = interactive
        self.login_needed = False

    async def _initialize(self) -> None:
        await super()._initialize()
        if self.context.current_tokens is not None:
            self.context.token_expiry_time = self.context.storage.expires_at()
            self.context.storage.restore_servers(self.context)

    async def _auth_flow(self, request):
        flow = super()._auth_flow(request)
        try:
            outgoing = await flow.__anext__()
            while True:
                response = yield outgoing
                if (not self.interactive and outgoing is request
                        and response.status_code == 401):
                    await flow.aclose()  # before it registers or redirects
                    # A token refused before its time (revoked, or one whose expiry was
                    # never said) may still be refreshed: try that once, then again.
                    if self.context.can_refresh_token():
                        async with self.context.lock:
                            answer = yield await self._refresh_token()
                            refreshed = await self._handle_refresh_response(answer)
                        if refreshed:
                            self._add_auth_header(request)
                            response = yield request
                            if response.status_code != 401:
                                return
                    self.login_needed = True
                    raise LoginNeeded(login_line(self.server_name))
                outgoing = await flow.asend(response)
        except StopAsyncIteration:
            return
        finally:
            await flow.aclose()


def client_metadata(redirect_uri: str) -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name="assistant", redirect_uris=[redirect_uri],
        grant_types=["authorization_code", "refresh_token"], response_types=["code"],
        token_endpoint_auth_method="none")


def provider(config) -> Provider:
    """A provider for start-up (``ask``, ``tools list``, the chat app): stored tokens,
    refreshed when they run out, and no browser."""
    made = Provider(config.url, client_metadata("http://127.0.0.1/callback"),
                    FileTokenStorage(config.name))
    made.server_name = config.name
    return made


class Loopback:
    """A one-shot HTTP listener on 127.0.0.1 at a random port that takes the redirect
    carrying the authorization code (RFC 8252's loopback redirect)."""

    def __init__(self):
        self.result: dict | None = None
        self.done = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                url = urlparse(self.path)
                if url.path != "/callback":
                    self.send_error(404)
                    return
                owner.result = {k: v[0] for k, v in parse_qs(url.query).items()}
                ok = "code" in owner.result
                body = (b"Logged in; you can close this tab." if ok else
                        b"The login did not finish; see the terminal.")
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                owner.done.set()

            def log_message(self, *args):  # the terminal is for the user's lines
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.redirect_uri = f"http://127.0.0.1:{self.server.server_address[1]}/callback"

    async def wait(self, timeout: float = LOGIN_WAIT) -> AuthorizationCodeResult:
        if not await asyncio.to_thread(self.done.wait, timeout):
            raise LoginFailed(f"no answer from the browser within {timeout:g} s")
        result = self.result or {}
        if "code" not in result:
            why = result.get("error_description") or result.get("error") or "no code"
            raise LoginFailed(f"the authorization server said: {why}")
        return AuthorizationCodeResult(code=result["code"], state=result.get("state"),
                                       iss=result.get("iss"))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LoginFailed(Exception):
    """The browser flow did not end with a code."""


async def login(config, open_browser: bool = True, say=print) -> None:
    """Run the browser flow for one server and keep its tokens: connect with an
    interactive provider, so the SDK discovers, registers, sends the user to the
    authorization URL and swaps the code for tokens, which land in the storage."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    loopback = Loopback()
    try:
        storage = FileTokenStorage(config.name)
        client = await storage.get_client_info()
        if client is not None and loopback.redirect_uri not in [str(u) for u in
                                                                client.redirect_uris or ()]:
            # registered for an earlier listener's port: register again for this one
            data = storage._read()
            data.pop("client", None)
            data.pop("tokens", None)
            storage._write(data)

        async def redirect(url: str) -> None:
            say(f"Open this URL to log in to '{config.name}':\n{url}", flush=True)
            if open_browser:
                webbrowser.open(url)

        auth = Provider(config.url, client_metadata(loopback.redirect_uri), storage,
                        redirect_handler=redirect, callback_handler=loopback.wait,
                        interactive=True)
        auth.server_name = config.name
        await _clear_tokens(storage)  # a login always asks again, even with tokens kept
        async with create_mcp_http_client(headers=config.headers or None, auth=auth) as http:
            async with Client(streamable_http_client(config.url, http_client=http),
                              read_timeout_seconds=LOGIN_WAIT + 30):
                pass
        if await storage.get_tokens() is None:
            raise LoginFailed("the server did not ask for a login; nothing was stored")
        storage.remember_servers(auth.context)
    finally:
        loopback.close()


async def _clear_tokens(storage: FileTokenStorage) -> None:
    data = storage._read()
    if "tokens" in data:
        data.pop("tokens")
        storage._write(data)
