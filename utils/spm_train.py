#!/usr/bin/env python3
"""Train SentencePiece like ESPnet's ``utils/spm_train`` (flags as ``--name=value``).

Usage: ``utils/spm_train.py --input=train.txt --vocab_size=300 --model_type=unigram
--model_prefix=data/token_list/bpe [--character_coverage=1.0] [--token_list=tokens.txt]``
"""

import argparse
import sys

from chunkssl_espnet.data.tokens import train_sentencepiece, write_token_list

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, help="text, one sentence per line")
    parser.add_argument("--vocab_size", type=int, required=True)
    parser.add_argument("--model_prefix", required=True)
    parser.add_argument("--model_type", default="unigram")
    parser.add_argument("--character_coverage", type=float, default=1.0)
    parser.add_argument("--input_sentence_size", type=int, default=100_000_000)
    parser.add_argument("--token_list", help="also write ESPnet's token list")
    args = parser.parse_args()
    try:
        model = train_sentencepiece(args.input, args.model_prefix, args.vocab_size,
                                    args.model_type, args.character_coverage,
                                    args.input_sentence_size)
        if args.token_list:
            write_token_list(model, args.token_list)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
