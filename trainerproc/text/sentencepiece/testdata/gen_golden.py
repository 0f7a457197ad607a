#!/usr/bin/python3
"""Generates the golden fixtures of the sentencepiece package's tests.

It trains several small SentencePiece Unigram models with Debian's
python3-sentencepiece (no real T5 spiece.model is shipped by a Debian or npm
package), generates a deterministic corpus of varied captions, and records
the ids the reference encoder gives for each caption.

Rerun (from this directory, with Debian's python3, not a pyenv one):

    apt-get install -y python3-sentencepiece
    /usr/bin/python3 gen_golden.py

Last run with sentencepiece 0.1.97 (Debian bookworm, python3-sentencepiece
0.1.97-3+b1). Outputs: models/*.model.gz and golden.jsonl.gz.
"""
import gzip
import io
import json
import os
import random

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(13)

WORDS = ("a photo of the cat dog sitting on red blue green wooden table in front "
         "house painting portrait woman man child playing with ball under tree "
         "sunset over mountains lake reflection city street night lights rain "
         "vintage car parked near old building highly detailed 4k render "
         "watercolor illustration anime style cinematic lighting close-up "
         "macro shot of flower bee garden spring autumn leaves snow winter").split()
ACCENTED = "café naïve résumé façade über Ålesund São Paulo crème brûlée piñata Zürich Dvořák Łódź".split()
CJK = ["猫", "犬", "東京の夜景", "桜の木", "山と湖", "一只猫", "夕阳", "고양이", "서울", "ｆｕｌｌｗｉｄｔｈ", "ｶﾀｶﾅ", "①②③", "㎏", "Ⅻ"]
EMOJI = ["😀", "🐱", "🌸", "🚗💨", "👍🏽", "🇯🇵", "❤️", "✨"]
PUNCT = [",", ".", "!", "?", ";", ":", "-", "--", "\u2014", "'", '"', "\u201c", "\u201d", "(", ")", "[", "]", "...", "/", "&", "#", "%", "@"]
SPACES = [" ", " ", " ", "  ", "\t", "\u3000", "\u00a0", " \n "]


def caption(i):
    kind = i % 7
    n = rng.randint(1, 12) if kind != 6 else rng.randint(60, 160)
    parts = []
    for _ in range(n):
        r = rng.random()
        if r < 0.62:
            w = rng.choice(WORDS)
            if rng.random() < 0.15:
                w = w.capitalize() if rng.random() < 0.7 else w.upper()
            parts.append(w)
        elif r < 0.72:
            parts.append(str(rng.randint(0, 100000)) if rng.random() < 0.7 else "%d.%d" % (rng.randint(0, 99), rng.randint(0, 99)))
        elif r < 0.80:
            parts.append(rng.choice(ACCENTED))
        elif r < 0.87:
            parts.append(rng.choice(CJK))
        elif r < 0.92:
            parts.append(rng.choice(EMOJI))
        else:
            parts.append(rng.choice(PUNCT))
    s = ""
    for p in parts:
        s += p + (rng.choice(SPACES) if rng.random() < 0.3 else " ")
    if kind == 0:
        s = "  " + s
    if kind == 5:
        s = s.replace(" ", "")
    return s


def train_corpus():
    lines = []
    for i in range(6000):
        c = caption(i)
        # Keep CJK and emoji rare in training so the models see unknown characters.
        if any(ch in c for ch in "猫犬桜😀🐱"):
            if rng.random() < 0.8:
                continue
        lines.append(c.replace("\n", " "))
    return lines


MODELS = [
    dict(name="uni1k", vocab_size=1000, normalization_rule_name="nmt_nfkc"),
    dict(name="uni2k_bytes", vocab_size=2000, normalization_rule_name="nmt_nfkc", byte_fallback=True),
    dict(name="uni800_cf_udef", vocab_size=800, normalization_rule_name="nmt_nfkc_cf",
         user_defined_symbols=["<sks>", "4k", "<SKS>", "\u216b"], control_symbols=["<extra_id_0>"]),
    dict(name="uni600_ident", vocab_size=600, normalization_rule_name="identity",
         remove_extra_whitespaces=False, add_dummy_prefix=False),
]


def main():
    corpus = train_corpus()
    os.makedirs(os.path.join(HERE, "models"), exist_ok=True)
    procs = {}
    for m in MODELS:
        m = dict(m)
        name = m.pop("name")
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus), model_writer=buf, model_type="unigram",
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=0.995,
            num_threads=1, seed_sentencepiece_size=100000, minloglevel=2, hard_vocab_limit=False, **m)
        data = buf.getvalue()
        with gzip.GzipFile(os.path.join(HERE, "models", name + ".model.gz"), "wb", mtime=0) as f:
            f.write(data)
        procs[name] = spm.SentencePieceProcessor(model_proto=data)
    caps = [caption(100000 + i) for i in range(2400)]
    caps += ["", " ", "   ", "\t\n", "a", "<sks> photo", "<SKS> PHOTO \u216b xii", "<extra_id_0>", "\u2581already", "x\u0301", "ﬁ ligature"]
    with gzip.GzipFile(os.path.join(HERE, "golden.jsonl.gz"), "wb", mtime=0) as f:
        for c in caps:
            rec = {"text": c}
            for name, sp in procs.items():
                rec[name] = sp.encode(c)
            f.write((json.dumps(rec, ensure_ascii=False) + "\n").encode())
    print("sentencepiece", spm.__version__, "captions", len(caps))


if __name__ == "__main__":
    main()
