"""Expected outputs of PixArt's caption cleaning for clean_test.go's table.

Runs the reference function itself (DeepFloyd IF's _clean_caption, which PixArt's pipeline
copies) out of a diffusers checkout, with the two libraries it needs and we do not port
replaced by identities: BeautifulSoup(text).text -> text, ftfy.fix_text -> text. The
captions below avoid HTML tags and mojibake, where those two would matter.

Rerun (Debian's python3, no extra packages):
  git --git-dir=<diffusers>.git show <commit>:src/diffusers/pipelines/pixart_alpha/pipeline_pixart_alpha.py > /tmp/pp.py
  /usr/bin/python3 trainerproc/t5/testdata/gen_clean.py /tmp/pp.py
It prints one Go table row per caption. Used here: diffusers commit
58eb52c0803ea9af3abec60841c2a093bdf1f951, Python 3.11.2.
"""
import ast
import html
import json
import re
import sys
import types
import urllib.parse as ul

CAPTIONS = [
    "  A Photo of a CAT  ",
    "a+red+car%20on+a+road",
    "“Smart” quotes and ‘single’ ones",
    "em—dash, en–dash and minus − sign",
    "visit https://example.com/page for more",
    "see www.example.org/a-b now",
    "mail me at john@example.com please",
    "tagged @someone_123 in the photo",
    "a cat 猫 sitting",
    "ip 192.168.0.1 here",
    "price &quot;ten&quot; &amp; more",
    "line one\\nline two",
    "item #12 and #123456 and 1234567",
    "download image.png and photo.JPG",
    "wow!!! ... really",
    "***AUSVERKAUFT*** #AUSVERKAUFT",
    "this-is-my-cute-cat",
    "snake_case_words_here_now",
    "model jc6640 and jc6640vc and 6640vc231",
    "worldwide free shipping on all orders",
    "free download free now",
    "click for details",
    "page 12 of the book",
    "wallpaper 1920x1080 hd",
    "time : noon",
    "one,two.three",
    "'quoted caption'",
    "-leading dash",
    "trailing plus+",
    ".hidden",
    "a   b\t\tc\n\nd",
    "the <person> smiles",
    "Ünïcödé ÀÉÎ",
    "&lt;b&gt;bold&lt;/b&gt;",
    "write to shop.com@host",
    "a.com@b.com",
    "",
]


def load(path):
    src = open(path, encoding="utf-8").read()
    tree = ast.parse(src)
    ns = {
        "re": re, "html": html, "ul": ul,
        "BeautifulSoup": lambda text, features=None: types.SimpleNamespace(text=text),
        "ftfy": types.SimpleNamespace(fix_text=lambda text: text),
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "PixArtAlphaPipeline":
            body = [n for n in node.body
                    if (isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "bad_punct_regex" for t in n.targets))
                    or (isinstance(n, ast.FunctionDef) and n.name == "_clean_caption")]
            cls = ast.ClassDef(name="Ref", bases=[], keywords=[], body=body, decorator_list=[])
            mod = ast.fix_missing_locations(ast.Module(body=[cls], type_ignores=[]))
            exec(compile(mod, path, "exec"), ns)
            return ns["Ref"]()
    raise SystemExit("no PixArtAlphaPipeline in " + path)


ref = load(sys.argv[1])
for c in CAPTIONS:
    once = ref._clean_caption(c)
    twice = ref._clean_caption(once)
    print("\t{%s, %s, %s}," % (json.dumps(c, ensure_ascii=False), json.dumps(once, ensure_ascii=False), json.dumps(twice, ensure_ascii=False)))
