"""The pruning proxy: any OpenAI client in front, any OpenAI-compatible upstream behind, query-aware context pruning
in between (`prunekit proxy --upstream URL`; README, "Pruning proxy").

`extract` finds the context and the question in chat messages, `keep` what must survive, `prune` cuts the passages
with the context pruner, `gate` decides when pruning pays, `pipeline` fails open, `forward` relays to and from the
upstream, `service` is the FastAPI app.
"""

from prunekit.app.proxy.config import DEFAULT_THRESHOLD, ProxySettings
from prunekit.app.proxy.service import create_proxy_app

__all__ = ["DEFAULT_THRESHOLD", "ProxySettings", "create_proxy_app"]
