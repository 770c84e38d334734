"""Offline ASR decoding: ESPnet's asr_inference (beam search) on a Chunk SSL model.

All of ESPnet's options apply. Ours: ``--decoding_chunk_size N`` (encoder frames, -1 = full
context) and ``--num_decoding_left_chunks M`` set the encoder's chunk mask for this decoding.
"""

from typing import List, Optional

from chunkssl_espnet.bin.input_check import run_inference


def main(cmd: Optional[List[str]] = None) -> None:
    run_inference("asr", cmd)


if __name__ == "__main__":
    main()
