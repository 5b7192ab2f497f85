"""The qBittorrent adapter: ``client`` (Web API calls, retries, typed errors) and ``model`` (typed records)."""
