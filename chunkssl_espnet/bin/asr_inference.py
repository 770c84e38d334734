"""Offline ASR decoding: ESPnet's asr_inference (beam search) on a Chunk SSL model.

All of ESPnet's options apply. Ours: ``--decoding_chunk_size N`` (encoder frames, -1 = full
context) and ``--num_decoding_left_chunks M`` set the encoder's chunk mask for this decoding.
"""

import sys
from typing import List, Optional

from chunkssl_espnet.bin import load_plugin
from chunkssl_espnet.bin.chunk_override import split_chunk_options


def main(cmd: Optional[List[str]] = None) -> None:
    load_plugin()
    from espnet2.bin.asr_inference import main as espnet_main

    argv, _ = split_chunk_options(list(sys.argv[1:] if cmd is None else cmd), "--asr_train_config")
    espnet_main(argv)


if __name__ == "__main__":
    main()
