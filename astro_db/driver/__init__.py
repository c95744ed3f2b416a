"""Talking to the server: the gateway, the one module that calls the driver (``gateway``), the
connection and its pool (``connection``), what is retried and the
circuit breaker (``retry``), time bounds (``timeouts``), read routing (``routing``) and
transactions (``transactions``). The executor's run step is their one caller for operations."""
