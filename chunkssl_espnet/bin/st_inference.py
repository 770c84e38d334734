"""Offline ST decoding: ESPnet's st_inference (beam search) on a Chunk SSL model.

All of ESPnet's options apply. Ours: ``--decoding_chunk_size N`` (encoder frames, -1 = full
context) and ``--num_decoding_left_chunks M`` set the encoder's chunk mask for this decoding.
"""

import sys
from typing import List, Optional

from chunkssl_espnet.bin.chunk_override import split_chunk_options
from chunkssl_espnet.bin.input_check import check_decoding_inputs, exit_on_input_error


def main(cmd: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if cmd is None else cmd)
    with exit_on_input_error():  # the audio's sample rate, the config's keys
        check_decoding_inputs(argv, "--st_train_config", "ChunkSTTask")
        argv, _ = split_chunk_options(argv, "--st_train_config")
    from espnet2.bin.st_inference import main as espnet_main

    espnet_main(argv)


if __name__ == "__main__":
    main()
