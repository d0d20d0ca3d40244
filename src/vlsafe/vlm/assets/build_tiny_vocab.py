"""Builds tiny_clip_vocab.json / tiny_clip_merges.txt: a small CLIP-format BPE vocabulary for tests.

The random CLIP checkpoints of the tests and the benchmark need a tokenizer, and nothing may be
downloaded. This learns 300 byte-pair merges from a word list written here (driving and prompt
words) in CLIP's format: 256 byte symbols, the same with the end-of-word mark `</w>`, the merges,
and the two special tokens. Run it from this folder: `python build_tiny_vocab.py`.
"""

import collections
import json
from pathlib import Path

WORDS = """
red vehicle is driving safely with no car accidents the car deviating from its trajectory off road or
encountering an accident green cars lane route blue traffic collision crash near miss tailgating clear
empty safe unsafe danger dangerous about to hit ahead behind left right turn intersection highway four
navigation speed fast slow stopped following distance gap ego drive drives driving road roads lanes a
of in on at to and with without into out from by for this that top down view bird eye scene image photo
""".split()
N_MERGES = 300


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def learn(words: list[str], n_merges: int) -> list[tuple[str, str]]:
    corpus = collections.Counter(tuple(w[:-1]) + (w[-1] + "</w>",) for w in words)
    merges = []
    for _ in range(n_merges):
        pairs: collections.Counter = collections.Counter()
        for word, freq in corpus.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += freq
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        merges.append(best)
        new = collections.Counter()
        for word, freq in corpus.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new[tuple(out)] += freq
        corpus = new
    return merges


def main() -> None:
    here = Path(__file__).parent
    base = list(bytes_to_unicode().values())
    merges = learn([w.lower() for w in WORDS], N_MERGES)
    tokens = base + [b + "</w>" for b in base] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    (here / "tiny_clip_vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (here / "tiny_clip_merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    print(f"{len(vocab)} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main()
