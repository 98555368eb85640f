"""The HTTP layer: the Starlette app, auth, the GraphQL view, webhooks, unsubscribe, exports."""
