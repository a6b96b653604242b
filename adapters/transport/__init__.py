"""Outbound HTTP for the adapters, in one place: `http_client.HTTPPool` (one origin, HTTP/2
where its server speaks it, else HTTP/1.1), `http2_client.HTTP2Pool` (our HTTP/2 client),
`http1_client.HTTP1Pool` (aiohttp) and `proxy` (the environment's proxy for an origin, and
CONNECT tunnels)."""
