"""JWTs from the organisation's identity provider: RS256 through a local JWKS server and HS256
with a shared secret are accepted, and refused for a bad signature, issuer, audience, expiry
or an unknown tenant (401), or a missing scope (403). With nothing configured, none is."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.api.conftest import Api, World, start_api, stop_api

ISSUER, AUDIENCE = "https://id.acme.example/", "herald"
SECRET = "a-shared-secret-for-the-hs256-tests-of-herald"  # 32 bytes or more, as RFC 7518 asks
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def claims(**changes: object) -> dict:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "ana@acme.example", "tenant": "acme",
            "scope": "reports.read schedules.read", "iat": now, "exp": now + 300, **changes}


class Jwks:
    """A local identity provider's JWKS endpoint, serving one RSA key's public half."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sign(self, payload: dict, key: object = None) -> str:
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    server = Jwks()
    yield server
    server.server.shutdown()


def status(api: Api, token: str, path: str = "/api/v1/reports") -> int:
    return api.client(token).get(path).status_code


def test_rs256_through_a_jwks_server(world: World, jwks: Jwks, tmp_path: Path) -> None:
    api = start_api(tmp_path, {"HERALD_JWT_JWKS_URL": jwks.url, "HERALD_JWT_ISSUER": ISSUER,
                               "HERALD_JWT_AUDIENCE": AUDIENCE})
    try:
        good = jwks.sign(claims())
        assert status(api, good) == 200
        assert status(api, good, f"/api/v1/schedules/{world.schedule}") == 200
        assert status(api, good, f"/api/v1/schedules/{world.their_schedule}") == 404  # beta's
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        refused = {
            "signature": jwks.sign(claims(), other_key),
            "issuer": jwks.sign(claims(iss="https://evil.example/")),
            "audience": jwks.sign(claims(aud="someone-else")),
            "expired": jwks.sign(claims(exp=int(time.time()) - 60)),
            "tenant": jwks.sign(claims(tenant="nobody")),
            "no tenant": jwks.sign({k: v for k, v in claims().items() if k != "tenant"}),
            "hs256 with the public key": jwt.encode(claims(), "not-the-key-but-as-long-as-one-should-be", algorithm="HS256"),
        }
        assert {why: status(api, token) for why, token in refused.items()} == dict.fromkeys(refused, 401)
        assert status(api, jwks.sign(claims(scope="schedules.read"))) == 403     # no reports.read
        assert status(api, jwks.sign(claims(scope=None, scp=["reports.read"]))) == 200
    finally:
        stop_api(api)


def test_hs256_with_a_shared_secret(world: World, tmp_path: Path) -> None:
    api = start_api(tmp_path, {"HERALD_JWT_SECRET": SECRET, "HERALD_JWT_ISSUER": ISSUER,
                               "HERALD_JWT_AUDIENCE": AUDIENCE})
    try:
        assert status(api, jwt.encode(claims(), SECRET, algorithm="HS256")) == 200
        for bad in (jwt.encode(claims(), "another-secret-entirely-and-long-enough-too", algorithm="HS256"),
                    jwt.encode(claims(aud="x"), SECRET, algorithm="HS256"),
                    jwt.encode(claims(exp=int(time.time()) - 1), SECRET, algorithm="HS256"),
                    jwt.encode({k: v for k, v in claims().items() if k != "exp"}, SECRET,
                               algorithm="HS256")):
            assert status(api, bad) == 401
        made = api.client(jwt.encode(claims(scope="schedules.write"), SECRET, algorithm="HS256")).post(
            f"/api/v1/schedules/{world.schedule}/pause")
        assert made.status_code == 200 and made.json()["active"] is False
    finally:
        stop_api(api)


def test_without_a_configured_key_no_jwt_is_accepted(api: Api, world: World) -> None:
    assert status(api, jwt.encode(claims(), SECRET, algorithm="HS256")) == 401
