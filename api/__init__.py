"""herald's HTTP API (`herald api`): a face like the CLI and the admin, on the same services.

`/api/v1` takes `Authorization: Bearer <token>`: an API token (`herald token create`) or, when
configured, an identity provider's JWT; either is bound to one tenant with its scopes. Errors
are RFC 9457 problem documents whose `detail` is the one sentence the CLI would print.
"""
