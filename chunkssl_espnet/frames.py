"""Frame geometry of the method (docs/method.md, sections 2 and 8), each number defined once.

16 kHz audio; fbank frames of ``WINDOW_SAMPLES`` (25 ms) every ``HOP_SAMPLES`` (10 ms); the encoder
sub-samples by ``SUBSAMPLING``, so one encoder frame (the unit of chunk sizes, and of FSQ targets:
``SUBSAMPLING`` stacked fbank frames each) lasts ``ENCODER_FRAME_MS`` = 40 ms.

Plain numbers and no imports, so that the light tools (the recipe and data command lines) use them
without loading torch; ``features``, the encoder, masking, streaming and the benchmarks import them
from here.
"""

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
#: Fbank frames per encoder frame: the encoder's sub-sampling factor, and so also the number of
#: fbank frames stacked into one FSQ target (targets and encoder frames must align).
SUBSAMPLING = 4
#: One encoder frame in ms (40).
ENCODER_FRAME_MS = SUBSAMPLING * HOP_SAMPLES * 1000 // SAMPLE_RATE
