"""Streaming recognition and translation with a Chunk SSL model (docs/method.md section 9).

``Speech2TextStreaming`` takes raw 16 kHz audio in pieces of any size, computes Kaldi fbank
incrementally (frame-local, so it equals the offline fbank), runs the chunked Conformer chunk by
chunk with batched caches (chunk size and left chunks chosen at decode time), updates a CTC prefix
beam search after every chunk (partial hypotheses) and, at the end of the utterance, rescores the
n-best with the attention decoder. ``reset()`` prepares it for the next utterance. With the chunk
size and left chunks used offline, its encoder output equals the offline encoder's under the same
chunk mask, so CTC greedy output matches offline CTC greedy output token for token.
``Speech2TextStreamingST`` shares the audio and encoder part and translates by local agreement.
"""

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np
import torch

from chunkssl_espnet.ctc_search import CTCPrefixBeamSearch, PrefixLM
from chunkssl_espnet.encoder import ChunkConformerEncoder
from chunkssl_espnet.encoder.subsampling import LEFT_CONTEXT
from chunkssl_espnet.features import kaldi_fbank
from chunkssl_espnet.frames import (
    ENCODER_FRAME_MS,
    HOP_SAMPLES,
    SAMPLE_RATE,
    SUBSAMPLING,
    WINDOW_SAMPLES,
)
from chunkssl_espnet.frontend import KaldiFbankFrontend

#: The last fbank window's overhang past its 10 ms hop (ms): audio a chunk waits for beyond itself.
WINDOW_OVERHANG_MS = (WINDOW_SAMPLES - HOP_SAMPLES) * 1000 / SAMPLE_RATE
#: ESPnet's beam searches: named loggers, and a module that logs through the root logger.
ESPNET_SEARCH_LOGGERS = ("espnet.nets.beam_search", "espnet.nets.batch_beam_search")
ESPNET_SEARCH_ROOT_MODULES = ("batch_beam_search_online",)


class _DropModuleRecords(logging.Filter):
    """Drops the records below ``level`` that ``modules`` log through the root logger."""

    def __init__(self, modules, level: int):
        super().__init__()
        self.modules, self.level = set(modules), level

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.module in self.modules and record.levelno < self.level)


@contextlib.contextmanager
def quiet_espnet_search(level: int = logging.WARNING) -> Iterator[None]:
    """Hide the records below ``level`` of ESPnet's beam searches while inside: they log every
    hypothesis of every search at INFO, and a streaming decoder searches after every chunk.
    Only their loggers are touched (levels restored on exit); every other logger keeps logging.
    """
    loggers = [logging.getLogger(name) for name in ESPNET_SEARCH_LOGGERS]
    levels = [lg.level for lg in loggers]
    drop = _DropModuleRecords(ESPNET_SEARCH_ROOT_MODULES, level)
    for lg in loggers:
        lg.setLevel(level)
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)
        for lg, before in zip(loggers, levels):
            lg.setLevel(before)


@dataclass
class ChunkRecord:
    """One chunk's partial result: where its audio ended and how long after that it came out."""

    audio_end_s: float
    latency_ms: float
    partial: str


@dataclass
class StreamStats:
    audio_s: float = 0.0
    compute_s: float = 0.0
    chunks: List[ChunkRecord] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s > 0 else 0.0


def check_streamable_normalize(normalize, config: str) -> None:
    """Streaming normalises each fbank frame as it arrives, which reproduces the offline features
    exactly only for a fixed affine map: ``global_mvn`` (or none).

    Raises:
        ValueError: any other ``normalize`` (``utterance_mvn`` needs statistics of the whole
            utterance, which a stream has not heard yet), with the reason.
    """
    from espnet2.layers.global_mvn import GlobalMVN

    if normalize is not None and not isinstance(normalize, GlobalMVN):
        raise ValueError(
            f"{config}: streaming cannot reproduce normalize: {type(normalize).__name__}: each "
            "frame is normalised when it arrives, so only a fixed map (global_mvn, statistics "
            "of the training set) gives the features the model was trained on; utterance-level "
            "statistics are not known until the utterance ends. Train with normalize: global_mvn"
        )


class ChunkStreamer:
    """Audio pieces -> incremental fbank -> encoder chunks; shared by streaming ASR and ST.

    Subclasses implement ``on_chunk(ys, t0)`` (called with each new chunk's encoder output
    (1, L, D)) and ``finish()`` (the final text).

    Args:
        model: an ESPnet ASR or ST model with ``kaldi_fbank`` frontend and ``chunk_conformer``.
        chunk_size: encoder frames per chunk (1 frame = ``ENCODER_FRAME_MS`` = 40 ms).
        num_left_chunks: left chunks kept in the attention cache (-1: all).
    """

    def __init__(self, model, config: str, device: str, chunk_size: int, num_left_chunks: int):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 encoder frame, got {chunk_size}")
        model.eval()
        if not isinstance(model.encoder, ChunkConformerEncoder):
            raise ValueError(f"{config}: streaming needs encoder: chunk_conformer")
        if not isinstance(model.frontend, KaldiFbankFrontend):
            raise ValueError(f"{config}: streaming needs frontend: kaldi_fbank")
        check_streamable_normalize(model.normalize, config)
        self.model = model
        self.device = torch.device(device)
        self.chunk_size = chunk_size
        self.num_left_chunks = num_left_chunks

    def reset(self) -> None:
        """Forget the current utterance."""
        self.samples = torch.zeros(0)
        self.fbank = torch.zeros(0, self.model.frontend.output_size(), device=self.device)
        self.offset = 0
        self.att_cache, self.cnn_cache = self.model.encoder.init_cache(1, self.device)
        self.encoded: List[torch.Tensor] = []
        self.stats = StreamStats()
        self.finished = False

    @property
    def required_cache_size(self) -> int:
        return self.chunk_size * self.num_left_chunks if self.num_left_chunks >= 0 else -1

    def on_chunk(self, ys: torch.Tensor, t0: float) -> str:
        raise NotImplementedError

    def finish(self) -> str:
        raise NotImplementedError

    def partial(self) -> str:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, speech: Union[np.ndarray, torch.Tensor], is_final: bool = False) -> str:
        """Feed the next piece of audio; returns the partial (or, if ``is_final``, final) text.

        Args:
            speech: (N,) float samples in [-1, 1] at 16 kHz; N may be 0.
            is_final: the stream ends with this piece: flush the last partial chunk and finish.
        """
        if self.finished:
            raise RuntimeError("the stream has ended: call reset() before the next utterance")
        t0 = time.perf_counter()
        piece = torch.as_tensor(np.asarray(speech, dtype=np.float32)).reshape(-1)
        self.stats.audio_s += piece.numel() / SAMPLE_RATE
        self.samples = torch.cat([self.samples, piece])
        self._extract_fbank()
        while self._frames_ready() >= SUBSAMPLING * self.chunk_size:
            self._encode(SUBSAMPLING * self.chunk_size, t0)
        if is_final:
            rest = self._frames_ready() // SUBSAMPLING * SUBSAMPLING
            if rest > 0:
                self._encode(rest, t0)
            if not self.encoded:
                logging.warning("stream ended before one encoder frame (%d ms + %g ms) was heard",
                                ENCODER_FRAME_MS, WINDOW_OVERHANG_MS)
            text = self.finish()
            self.finished = True
        else:
            text = self.partial()
        self.stats.compute_s += time.perf_counter() - t0
        return text

    def _extract_fbank(self) -> None:
        """Turn every complete 25 ms window of buffered samples into a normalised fbank frame."""
        n = self.samples.numel()
        if n < WINDOW_SAMPLES:
            return
        frames = (n - WINDOW_SAMPLES) // HOP_SAMPLES + 1
        used = (frames - 1) * HOP_SAMPLES + WINDOW_SAMPLES
        feats = kaldi_fbank(self.samples[:used], SAMPLE_RATE, self.model.frontend.n_mels)
        self.samples = self.samples[frames * HOP_SAMPLES :]
        feats = feats.to(self.device)[None]
        if self.model.normalize is not None:
            lens = torch.tensor([feats.shape[1]], device=self.device)
            feats, _ = self.model.normalize(feats, lens)
        self.fbank = torch.cat([self.fbank, feats[0]])

    def _frames_ready(self) -> int:
        """New fbank frames (beyond the sub-sampling context) waiting to be encoded."""
        return self.fbank.shape[0] - (LEFT_CONTEXT if self.offset > 0 else 0)

    def _encode(self, new_frames: int, t0: float) -> None:
        ctx = LEFT_CONTEXT if self.offset > 0 else 0
        xs = self.fbank[: ctx + new_frames][None]
        ys, self.att_cache, self.cnn_cache = self.model.encoder.forward_chunk(
            xs, self.offset, self.required_cache_size, self.att_cache, self.cnn_cache
        )
        self.fbank = self.fbank[ctx + new_frames - LEFT_CONTEXT :]
        self.offset += ys.shape[1]
        self.encoded.append(ys)
        partial = self.on_chunk(ys, t0)
        latency = (time.perf_counter() - t0) * 1000.0
        self.stats.chunks.append(ChunkRecord(self.audio_end_s(), latency, partial))

    def audio_end_s(self) -> float:
        """Seconds of audio the encoder output so far depends on."""
        return ((self.offset * SUBSAMPLING - 1) * HOP_SAMPLES + WINDOW_SAMPLES) / SAMPLE_RATE

    def _text(self, ids: List[int]) -> str:
        """Token ids to text with the ``text_tokenizer`` and ``converter`` a subclass sets."""
        return self.text_tokenizer.tokens2text(self.converter.ids2tokens(ids)) if ids else ""

    def algorithmic_latency_ms(self) -> float:
        """Audio a chunk waits for: the chunk itself plus the last fbank window's overhang."""
        return self.chunk_size * ENCODER_FRAME_MS + WINDOW_OVERHANG_MS


def _text_tools(args, token_list):
    from espnet2.text.build_tokenizer import build_tokenizer
    from espnet2.text.token_id_converter import TokenIDConverter

    return (build_tokenizer(token_type=args.token_type, bpemodel=args.bpemodel),
            TokenIDConverter(token_list=token_list))


class Speech2TextStreaming(ChunkStreamer):
    """Streaming ASR: CTC prefix beam search after every chunk, rescoring at the end.

    With a language model, the prefix search fuses it (``ctc + lm_weight * lm``, see
    ``chunkssl_espnet.ctc_search``). The final result is the hypothesis of the beam with the best
    ``ctc_weight * ctc + (1 - ctc_weight) * attention + lm_weight * lm`` log probability (the
    weights of ESPnet's offline beam search, the LM's ``<eos>`` included); the partial results
    are the beam's best prefix.

    Args:
        asr_train_config, asr_model_file: an ESPnet ASR experiment (chunk_conformer,
            kaldi_fbank).
        beam_size: CTC prefix beam size (1: greedy, no rescoring).
        ctc_weight: weight of the CTC score in the final attention rescoring.
        lm_train_config, lm_file: an ESPnet LM experiment on the ASR model's token list
            (optional).
        lm_weight: its weight in the prefix search and in the final rescoring.

    Raises:
        ValueError: the LM's vocabulary is not the ASR model's.
    """

    def __init__(
        self,
        asr_train_config: Union[str, Path],
        asr_model_file: Union[str, Path],
        device: str = "cpu",
        chunk_size: int = 16,
        num_left_chunks: int = -1,
        beam_size: int = 10,
        ctc_weight: float = 0.3,
        lm_train_config: Optional[Union[str, Path]] = None,
        lm_file: Optional[Union[str, Path]] = None,
        lm_weight: float = 0.0,
    ):
        from chunkssl_espnet.espnet_plugin import ChunkASRTask

        model, args = ChunkASRTask.build_model_from_file(asr_train_config, asr_model_file, device)
        super().__init__(model, str(asr_train_config), device, chunk_size, num_left_chunks)
        self.beam_size = beam_size
        self.ctc_weight = ctc_weight
        self.lm_weight = lm_weight
        self.lm = None
        if lm_train_config is not None and lm_weight != 0.0:
            lm = load_lm(lm_train_config, lm_file, model.token_list, device)
            self.lm = PrefixLM(lm.lm, sos_eos=lm.sos)
        self.text_tokenizer, self.converter = _text_tools(args, model.token_list)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.search = CTCPrefixBeamSearch(self.beam_size, blank=self.model.blank_id, lm=self.lm,
                                          lm_weight=self.lm_weight)

    def on_chunk(self, ys: torch.Tensor, t0: float) -> str:
        self.search.step(self.model.ctc.log_softmax(ys)[0])
        return self.partial()

    def partial(self) -> str:
        return self._text(self.search.best())

    def finish(self) -> str:
        nbest = self.search.nbest()
        if not self.encoded or len(nbest) == 1:
            return self._text(nbest[0][0])
        hyps = [h for h, _ in nbest]
        scores = [c for _, c in nbest]
        if self.model.decoder is not None and self.ctc_weight < 1.0:
            scores = [self.ctc_weight * c + (1 - self.ctc_weight) * a
                      for c, a in zip(scores, self._rescore(hyps))]
        if self.lm is not None:
            scores = [s + self.lm_weight * self.search.lm_score(h) for s, h in zip(scores, hyps)]
        return self._text(hyps[int(np.argmax(scores))])

    @torch.no_grad()
    def _rescore(self, hyps: List[List[int]]) -> List[float]:
        """Attention decoder log probability of each hypothesis (with <eos>), full context."""
        m = self.model
        enc = torch.cat(self.encoded, dim=1)
        n = len(hyps)
        max_len = max(len(h) for h in hyps) + 1
        ys_in = torch.full((n, max_len), m.eos, dtype=torch.long, device=self.device)
        ys_out = torch.full((n, max_len), -1, dtype=torch.long, device=self.device)
        for i, h in enumerate(hyps):
            ys_in[i, : len(h) + 1] = torch.tensor([m.sos] + h)
            ys_out[i, : len(h) + 1] = torch.tensor(h + [m.eos])
        lens = torch.tensor([len(h) + 1 for h in hyps], device=self.device)
        hlens = torch.full((n,), enc.shape[1], dtype=torch.long, device=self.device)
        logits, _ = m.decoder(enc.expand(n, -1, -1), hlens, ys_in, lens)
        logp = torch.log_softmax(logits, dim=-1)
        tok = logp.gather(-1, ys_out.clamp(min=0)[..., None])[..., 0]
        return (tok * (ys_out >= 0)).sum(-1).tolist()


def load_lm(config: Union[str, Path], model_file: Optional[Union[str, Path]],
            token_list: Sequence[str], device: str = "cpu"):
    """An ESPnet LM (``ESPnetLanguageModel``, eval mode) whose token list must be
    ``token_list``.

    Raises:
        ValueError: the LM was trained on another token list.
    """
    from chunkssl_espnet.espnet_plugin import ChunkLMTask

    lm, lm_args = ChunkLMTask.build_model_from_file(config, model_file, device)
    if list(lm_args.token_list) != list(token_list):
        raise ValueError(f"{config}: the LM's token list ({len(lm_args.token_list)} tokens) is "
                         f"not the ASR model's ({len(token_list)}): train the LM on the ASR "
                         "model's token list")
    return lm.eval()


def local_agreement(committed: List[int], previous: List[int], current: List[int]) -> List[int]:
    """The committed prefix after a new hypothesis: the longest common prefix of the previous
    and current hypotheses, when it extends what is committed; else what is committed."""
    agree = 0
    for a, b in zip(previous, current):
        if a != b:
            break
        agree += 1
    if agree > len(committed) and current[: len(committed)] == committed:
        return current[:agree]
    return committed


class Speech2TextStreamingST(ChunkStreamer):
    """Streaming ST by local agreement: after every chunk, re-decode the encoder output so far
    with ESPnet's beam search and commit the longest common prefix of this hypothesis and the
    previous chunk's; committed tokens are never retracted. At the end of the utterance the
    final hypothesis completes the committed prefix.

    ``delays`` holds, per committed target token, the source audio (ms) read when it was
    committed; ``word_delays()`` merges them per output word, for average lagging in words.
    """

    def __init__(
        self,
        st_train_config: Union[str, Path],
        st_model_file: Union[str, Path],
        device: str = "cpu",
        chunk_size: int = 16,
        num_left_chunks: int = -1,
        beam_size: int = 4,
        maxlenratio: float = 0.5,
        penalty: float = 0.0,
    ):
        from espnet.nets.beam_search import BeamSearch
        from espnet.nets.scorers.length_bonus import LengthBonus

        from chunkssl_espnet.espnet_plugin import ChunkSTTask

        model, args = ChunkSTTask.build_model_from_file(st_train_config, st_model_file, device)
        super().__init__(model, str(st_train_config), device, chunk_size, num_left_chunks)
        n_tok = len(model.token_list)
        self.beam_search = BeamSearch(
            scorers={"decoder": model.decoder, "length_bonus": LengthBonus(n_tok)},
            weights={"decoder": 1.0, "length_bonus": penalty},
            beam_size=beam_size, vocab_size=n_tok, sos=model.sos, eos=model.eos,
            token_list=model.token_list, pre_beam_score_key="full",
        ).to(self.device).eval()
        self.maxlenratio = maxlenratio
        self.token_type = args.token_type
        self.text_tokenizer, self.converter = _text_tools(args, model.token_list)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.committed: List[int] = []
        self.previous: List[int] = []
        self.delays: List[float] = []

    def word_delays(self) -> List[float]:
        """(W,) per word of the output, the source read (ms) when its last token was
        committed (``chunkssl_espnet.data.scoring.word_delays``)."""
        from chunkssl_espnet.data import scoring

        tokens = self.converter.ids2tokens(self.committed)
        return scoring.word_delays(tokens, self.delays, self.token_type)

    def _decode(self) -> List[int]:
        enc = torch.cat(self.encoded, dim=1)[0]
        with quiet_espnet_search():
            hyps = self.beam_search(x=enc, maxlenratio=self.maxlenratio, minlenratio=0.0)
        if not hyps:
            return []
        return [int(t) for t in hyps[0].yseq[1:].tolist() if int(t) != self.model.eos]

    def _commit(self, tokens: List[int], delay_ms: float) -> None:
        self.delays.extend([delay_ms] * (len(tokens) - len(self.committed)))
        self.committed = list(tokens)

    def on_chunk(self, ys: torch.Tensor, t0: float) -> str:
        hyp = self._decode()
        agreed = local_agreement(self.committed, self.previous, hyp)
        if len(agreed) > len(self.committed):
            self._commit(agreed, self.audio_end_s() * 1000.0)
        self.previous = hyp
        return self.partial()

    def partial(self) -> str:
        return self._text(self.committed)

    def finish(self) -> str:
        if self.encoded:
            final = self._decode()
            self._commit(self.committed + final[len(self.committed) :],
                         self.stats.audio_s * 1000.0)
        return self.partial()


def decode_stream(s2t: ChunkStreamer, audio: torch.Tensor, piece_sizes: List[int]) -> str:
    """Feed ``audio`` (N,) in pieces of the given sizes (cycled) and return the final text."""
    s2t.reset()
    pos, i = 0, 0
    n = audio.numel()
    while pos < n:
        step = max(int(piece_sizes[i % len(piece_sizes)]), 1)
        s2t(audio[pos : pos + step], is_final=False)
        pos += step
        i += 1
    return s2t(audio[:0], is_final=True)


def random_piece_sizes(n: int, seed: int, low_ms: float = 10, high_ms: float = 500) -> List[int]:
    """Random piece sizes (samples) covering ``n`` samples, as a live audio source would deliver."""
    g = np.random.default_rng(seed)
    sizes, total = [], 0
    while total < n:
        s = int(g.uniform(low_ms, high_ms) * SAMPLE_RATE / 1000)
        sizes.append(s)
        total += s
    return sizes or [1]
