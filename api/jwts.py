"""JWTs from the organisation's identity provider: accepted only when configured.

The signature is checked against HERALD_JWT_JWKS_URL or HERALD_JWT_PUBLIC_KEY (RS256, ES256) or
HERALD_JWT_SECRET (HS256), with the issuer (HERALD_JWT_ISSUER), audience (HERALD_JWT_AUDIENCE)
and expiry. Scopes come from `scope` (space-separated) or `scp` (a list or a string); the
tenant's slug from the claim HERALD_JWT_TENANT_CLAIM (default `tenant`). With none of the keys
configured, no JWT is accepted.
"""

from __future__ import annotations

import functools
import logging

import jwt
from sqlmodel import select

from models.db import session_scope
from models.settings import get_settings
from models.tenancy import Tenant
from models.tokens import Scope
from services.access import ApiClient

log = logging.getLogger("herald.api")
ASYMMETRIC = ["RS256", "ES256"]


@functools.cache
def _jwks(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)


def client_of(token: str) -> ApiClient | None:
    """The caller a JWT stands for, or None when JWTs are not configured or this one is not
    valid (a bad signature, issuer, audience, expiry; no tenant, or one herald does not know)."""
    settings = get_settings()
    if not (settings.jwt_jwks_url or settings.jwt_public_key or settings.jwt_secret):
        return None
    try:
        if settings.jwt_jwks_url:
            key, algorithms = _jwks(settings.jwt_jwks_url).get_signing_key_from_jwt(token).key, ASYMMETRIC
        elif settings.jwt_public_key:
            key, algorithms = settings.jwt_public_key, ASYMMETRIC
        else:
            key, algorithms = settings.jwt_secret.get_secret_value(), ["HS256"]
        claims = jwt.decode(token, key, algorithms=algorithms, audience=settings.jwt_audience,
                            issuer=settings.jwt_issuer,
                            options={"require": ["exp", "iss", "aud"]})
    except jwt.PyJWTError as exc:
        log.info("a JWT was refused: %s", type(exc).__name__)
        return None
    slug = claims.get(settings.jwt_tenant_claim)
    if not isinstance(slug, str):
        return None
    with session_scope() as session:
        tenant_id = session.exec(select(Tenant.id).where(Tenant.slug == slug)).first()
    if tenant_id is None:
        return None
    known = {s.value for s in Scope}
    return ApiClient(tenant_id=tenant_id, scopes=frozenset(_scopes(claims)) & known,
                     actor=f"jwt {str(claims.get('sub') or '?')[:200]}")


def _scopes(claims: dict) -> list[str]:
    scope, scp = claims.get("scope"), claims.get("scp")
    found = scope.split() if isinstance(scope, str) else []
    if isinstance(scp, str):
        found += scp.split()
    elif isinstance(scp, list):
        found += [s for s in scp if isinstance(s, str)]
    return found
