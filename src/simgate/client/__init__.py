"""The user's side of the /3rdparty/v1 API: where the server is, who is asking, and an
HTTP client that turns the server's answers into values or one clear error.

Used by the user commands (`simgate send`, `messages`, `inbox`, `webhooks`); it speaks
only the sms-gate.app-compatible API, so it works against any server that does."""
