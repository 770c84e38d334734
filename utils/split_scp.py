#!/usr/bin/env python3
"""Split an scp file into contiguous parts, Kaldi's ``split_scp.pl`` syntax.

Usage: ``utils/split_scp.py in.scp out.1.scp out.2.scp ...``
"""

import argparse
import sys

from chunkssl_espnet.data.datadir import split_scp_files

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scp")
    parser.add_argument("outputs", nargs="+")
    args = parser.parse_args()
    try:
        split_scp_files(args.scp, args.outputs)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
