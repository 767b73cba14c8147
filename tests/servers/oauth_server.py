"""An OAuth-protected Streamable HTTP MCP server for the tests: one process that is both
the authorization server (metadata, dynamic client registration, an /authorize that
approves at once and redirects with a code, /token with PKCE and refresh) and the resource
server at /mcp, built from the SDK's server-side auth helpers.

    python oauth_server.py PORT_FILE [ACCESS_TOKEN_SECONDS]

It binds 127.0.0.1 on a free port and writes the port to PORT_FILE once it listens.
Each access token lives at least ACCESS_TOKEN_SECONDS (default 3600; the expiry is
kept in whole seconds, rounded up, never down), so a test can watch one run
out and be refreshed; every refresh is counted in the ``refreshes`` tool's answer.
"""

import math
import secrets
import socket
import sys
import time

import uvicorn
from mcp.server import MCPServer
from mcp.server.auth.provider import (AccessToken, AuthorizationCode, RefreshToken,
                                      construct_redirect_uri)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions

LIFETIME = int(sys.argv[2]) if len(sys.argv) > 2 else 3600


class AutoApprove:
    """An authorization server that says yes to everyone, in memory."""

    def __init__(self):
        self.clients, self.codes, self.access, self.refresh = {}, {}, {}, {}
        self.refreshes = 0

    async def get_client(self, client_id):
        return self.clients.get(client_id)

    async def register_client(self, client_info):
        self.clients[client_info.client_id] = client_info

    async def authorize(self, client, params):
        code = secrets.token_urlsafe(16)
        self.codes[code] = AuthorizationCode(
            code=code, scopes=params.scopes or [], expires_at=time.time() + 300,
            client_id=client.client_id, code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource)
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state)

    async def load_authorization_code(self, client, authorization_code):
        return self.codes.get(authorization_code)

    async def exchange_authorization_code(self, client, authorization_code):
        self.codes.pop(authorization_code.code, None)
        return self._issue(client.client_id, authorization_code.scopes,
                           authorization_code.resource)

    async def load_refresh_token(self, client, refresh_token):
        return self.refresh.get(refresh_token)

    async def exchange_refresh_token(self, client, refresh_token, scopes):
        self.refresh.pop(refresh_token.token, None)
        self.refreshes += 1
        return self._issue(client.client_id, scopes or refresh_token.scopes,
                           refresh_token.resource)

    async def load_access_token(self, token):
        found = self.access.get(token)
        if found is None or (found.expires_at and found.expires_at < time.time()):
            return None
        return found

    async def revoke_token(self, token):
        self.access.pop(getattr(token, "token", None), None)
        self.refresh.pop(getattr(token, "token", None), None)

    def _issue(self, client_id, scopes, resource):
        from mcp.shared.auth import OAuthToken

        access, refresh = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        self.access[access] = AccessToken(token=access, client_id=client_id, scopes=scopes,
                                          expires_at=math.ceil(time.time()) + LIFETIME,
                                          resource=resource)
        self.refresh[refresh] = RefreshToken(token=refresh, client_id=client_id,
                                             scopes=scopes, resource=resource)
        return OAuthToken(access_token=access, token_type="Bearer", expires_in=LIFETIME,
                          refresh_token=refresh, scope=" ".join(scopes) or None)


def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    provider = AutoApprove()
    server = MCPServer(name="guarded", auth_server_provider=provider, auth=AuthSettings(
        issuer_url=base, resource_server_url=f"{base}/mcp",
        client_registration_options=ClientRegistrationOptions(enabled=True),
        validate_token_resource=True))

    @server.tool(description="Says the secret, for those logged in")
    def secret() -> str:
        return "the owl flies at night"

    @server.tool(description="How many times a token was refreshed")
    def refreshes() -> str:
        return str(provider.refreshes)

    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning")
    uv = uvicorn.Server(config)

    async def serve():
        import asyncio

        task = asyncio.create_task(uv.serve(sockets=[sock]))
        while not uv.started:
            await asyncio.sleep(0.05)
        with open(sys.argv[1], "w") as out:
            out.write(str(port))
        await task

    import asyncio

    asyncio.run(serve())


if __name__ == "__main__":
    main()
