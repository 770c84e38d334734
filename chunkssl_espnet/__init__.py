"""chunkssl_espnet: Chunk SSL (arXiv 2509.15579) on top of ESPnet.

The method and the decisions taken where the paper is silent are in docs/method.md.
"""

__version__ = "0.1.0"
