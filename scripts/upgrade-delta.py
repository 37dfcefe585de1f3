#!/usr/bin/env python3
"""The delta between two install scripts of embedstack, as an upgrade-script skeleton or a check.

An upgrade script (sql/embedstack--OLD--NEW.sql) restates only what changed since the previous
release, and must leave every object exactly as a fresh install of NEW defines it (the
upgrade-equals-fresh-install test compares prosrc, pg_get_functiondef and the comments). This
compares the frozen install script of the previous release (sql/releases/embedstack--OLD.sql)
with the current one (`cargo pgrx schema` output, or a file) and finds every function, procedure,
aggregate, view and COMMENT ON that was added, removed or changed:

  scripts/upgrade-delta.py --from sql/releases/embedstack--0.4.0.sql
      prints a skeleton of the upgrade script: each removed object dropped, each added one created
      and each changed one restated (CREATE OR REPLACE), verbatim from the current install script
      (so that the function bodies are byte for byte those of a fresh install), each with its
      COMMENT and a `-- TODO` line to say why; statements of other kinds that differ (tables,
      policies, grants, triggers, types, ...) are listed as comments, for a hand-written delta.
  scripts/upgrade-delta.py --from sql/releases/embedstack--0.4.0.sql --list
      only the list: one line per object, `+` added, `-` removed, `~` changed.
  scripts/upgrade-delta.py --check sql/embedstack--0.4.0--0.4.1.sql
      exits 1 (naming each problem) unless the committed upgrade script restates every added or
      changed function, procedure, aggregate and view with exactly its current definition, drops
      every removed one, sets every added or changed comment (and the comment of an object it drops
      and creates again) to its current text, and restates nothing with another definition than
      the current one; exits 0 otherwise. --from defaults to sql/releases/embedstack--OLD.sql, OLD
      read from the upgrade script's name.

The current install script: --to FILE (e.g. the embedstack--NEW.sql of a `cargo pgrx package`),
else `cargo pgrx schema [pgNN]` is run in the repository (a debug build, a few seconds once
built), pgNN from --pg or from $PG, with the Cargo features in $ES_FEATURES (both exported by
scripts/env.sh). Exit status 2: bad arguments or a script that cannot be read or parsed.

Comparison: statements are split and tokenised as PostgreSQL does (quotes, dollar quotes, nested
comments, psql meta-commands skipped); outside bodies and literals, whitespace, comments, keyword
case and needless identifier quotes do not count (pgrx's generated CREATE FUNCTION and a hand-copied
one compare equal), and adjacent string literals are one literal. A function body (a dollar-quoted
string) is compared exactly: a change of whitespace or of a comment inside it changes prosrc, so it
is a change (`--ignore-body-whitespace` stops counting whitespace-only body changes). Signatures
are compared as PostgreSQL identifies routines: input argument types only, type synonyms
(float8 = double precision, int4 = integer, ...) and typmods, array bounds and schemas of types
ignored. Not seen: objects an upgrade script creates with EXECUTE inside a DO block.

Checked against every upgrade script of this repository: for each OLD--NEW pair,
`scripts/upgrade-delta.py --check sql/embedstack--OLD--NEW.sql --to sql/releases/embedstack--NEW.sql`
exits 0 (0.2.1 and 0.3.1 with a note: they changed merge() and the status view by ALTER, which is
not compared), and an upgrade script missing a restatement, with one space changed in a body, or
with another comment text exits 1.

Python 3 standard library only.
"""

import argparse
import difflib
import os
import re
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ParseError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Tokens and statements
# ---------------------------------------------------------------------------------------------

# Token kinds: word (keyword or identifier, lowercased), qident (quoted identifier, its content),
# string (a literal, its value; E'' strings keep their escapes), dollar (a dollar-quoted string,
# raw with its delimiters), number, op (operator characters), punct (one of ( ) , ; [ ] . :).
WORD_RE = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
NUM_RE = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
DOLLAR_RE = re.compile(r"\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")
OP_CHARS = set("+-*/<>=~!@#%^&|`?")
PUNCT = set("(),;[].:")
SIMPLE_IDENT = re.compile(r"[a-z_][a-z0-9_$]*\Z")


class Token:
    __slots__ = ("kind", "value", "start", "end")

    def __init__(self, kind, value, start, end):
        self.kind, self.value, self.start, self.end = kind, value, start, end

    def key(self):
        return (self.kind, self.value)

    def __repr__(self):
        return f"{self.kind}:{self.value!r}"


def tokenize(text):
    """Tokens of SQL text (comments dropped); psql meta-command lines become ('meta', line)."""
    toks = []
    i, n = 0, len(text)
    line_start = True  # only whitespace since the last newline (or the text's start)
    while i < n:
        c = text[i]
        if c == "\n":
            line_start = True
            i += 1
            continue
        if c in " \t\r\f\v":
            i += 1
            continue
        if c == "\\" and line_start:
            j = text.find("\n", i)
            j = n if j < 0 else j
            toks.append(Token("meta", text[i:j].strip(), i, j))
            i = j
            continue
        line_start = False
        if text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise ParseError(f"unterminated /* comment at offset {i}")
            i = j
            continue
        if c == "'" or (c in "eE" and text.startswith("'", i + 1) and not _ident_char_before(text, i)):
            escape = c != "'"
            j = i + (2 if escape else 1)
            buf = []
            while True:
                if j >= n:
                    raise ParseError(f"unterminated string at offset {i}")
                ch = text[j]
                if escape and ch == "\\":
                    buf.append(text[j : j + 2])
                    j += 2
                    continue
                if ch == "'":
                    if text.startswith("'", j + 1):
                        buf.append("'")
                        j += 2
                        continue
                    j += 1
                    break
                buf.append(ch)
                j += 1
            value = "".join(buf)
            toks.append(Token("string", ("E:" + value) if escape else value, i, j))
            i = j
            continue
        if c == '"':
            j = i + 1
            buf = []
            while True:
                if j >= n:
                    raise ParseError(f"unterminated quoted identifier at offset {i}")
                if text[j] == '"':
                    if text.startswith('"', j + 1):
                        buf.append('"')
                        j += 2
                        continue
                    j += 1
                    break
                buf.append(text[j])
                j += 1
            toks.append(Token("qident", "".join(buf), i, j))
            i = j
            continue
        if c == "$":
            m = DOLLAR_RE.match(text, i)
            if m and not _ident_char_before(text, i):
                delim = m.group(0)
                j = text.find(delim, m.end())
                if j < 0:
                    raise ParseError(f"unterminated dollar quote {delim} at offset {i}")
                j += len(delim)
                toks.append(Token("dollar", text[i:j], i, j))
                i = j
                continue
            m = re.compile(r"\$\d+").match(text, i)
            if m:
                toks.append(Token("param", m.group(0), i, m.end()))
                i = m.end()
                continue
        m = WORD_RE.match(text, i)
        if m:
            toks.append(Token("word", m.group(0).lower(), i, m.end()))
            i = m.end()
            continue
        m = NUM_RE.match(text, i)
        if m:
            toks.append(Token("number", m.group(0), i, m.end()))
            i = m.end()
            continue
        if c in PUNCT:
            if c == ":" and text.startswith("::", i):
                toks.append(Token("op", "::", i, i + 2))
                i += 2
                continue
            toks.append(Token("punct", c, i, i + 1))
            i += 1
            continue
        if c in OP_CHARS:
            j = i
            while j < n and text[j] in OP_CHARS and not text.startswith("--", j) and not text.startswith("/*", j):
                j += 1
            toks.append(Token("op", text[i:j], i, j))
            i = j
            continue
        raise ParseError(f"unexpected character {c!r} at offset {i}")
    return toks


def _ident_char_before(text, i):
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_$")


def canonical(tokens):
    """The comparison form of tokens: quoted identifiers that need no quotes unquoted, adjacent
    string literals joined."""
    out = []
    for t in tokens:
        kind, value = t.kind, t.value
        if kind == "qident" and SIMPLE_IDENT.match(value):
            kind = "word"
        if kind == "string" and out and out[-1][0] == "string" and not value.startswith("E:"):
            out[-1] = ("string", out[-1][1] + value)
            continue
        out.append((kind, value))
    return tuple(out)


class Statement:
    def __init__(self, text, tokens, line):
        self.text = text  # raw, from its first token through the terminating semicolon
        self.tokens = tokens  # without the semicolon
        self.line = line

    def words(self, k):
        return [t.value if t.kind in ("word", "qident") else None for t in self.tokens[:k]]


def statements(text):
    toks = tokenize(text)
    out, cur = [], []
    for t in toks:
        if t.kind == "meta":
            if cur:
                raise ParseError(f"psql meta-command inside a statement at line {_line(text, t.start)}")
            continue
        if t.kind == "punct" and t.value == ";":
            if cur:
                out.append(Statement(text[cur[0].start : t.end], cur, _line(text, cur[0].start)))
            cur = []
            continue
        cur.append(t)
    if cur:
        out.append(Statement(text[cur[0].start :], cur, _line(text, cur[0].start)))
    return out


def _line(text, offset):
    return text.count("\n", 0, offset) + 1


# ---------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------

TYPE_SYNONYMS = {
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "int2": "smallint",
    "float8": "double precision",
    "float": "double precision",
    "float4": "real",
    "bool": "boolean",
    "varchar": "character varying",
    "char": "character",
    "bpchar": "character",
    "decimal": "numeric",
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "timetz": "time with time zone",
    "time": "time without time zone",
    "varbit": "bit varying",
}
MULTIWORD_TYPES = {
    "double precision",
    "character varying",
    "bit varying",
    "timestamp with time zone",
    "timestamp without time zone",
    "time with time zone",
    "time without time zone",
}
ARG_MODES = {"in", "out", "inout", "variadic"}


def split_top(tokens, sep=","):
    """Split tokens at top-level `sep` punctuation (outside parentheses and brackets)."""
    parts, cur, depth = [], [], 0
    for t in tokens:
        if t.kind == "punct" and t.value in "([":
            depth += 1
        elif t.kind == "punct" and t.value in ")]":
            depth -= 1
        if depth == 0 and t.kind == "punct" and t.value == sep:
            parts.append(cur)
            cur = []
            continue
        cur.append(t)
    if cur or parts:
        parts.append(cur)
    return parts


def matching_paren(tokens, i):
    """Index of the ')' matching the '(' at tokens[i]."""
    depth = 0
    for j in range(i, len(tokens)):
        t = tokens[j]
        if t.kind == "punct" and t.value == "(":
            depth += 1
        elif t.kind == "punct" and t.value == ")":
            depth -= 1
            if depth == 0:
                return j
    raise ParseError("unbalanced parentheses")


def type_name(tokens):
    """Normalised type of an argument: schema, typmods and array bounds dropped, synonyms mapped."""
    words, array = [], False
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.kind == "punct" and t.value == "(":
            i = matching_paren(tokens, i) + 1
            continue
        if t.kind == "punct" and t.value == "[":
            array = True
            while i < len(tokens) and not (tokens[i].kind == "punct" and tokens[i].value == "]"):
                i += 1
            i += 1
            continue
        if t.kind == "punct" and t.value == ".":
            words = []  # a schema before it
            i += 1
            continue
        if t.kind == "word" and t.value == "array":
            array = True
            i += 1
            continue
        if t.kind in ("word", "qident"):
            words.append((t.value, t.kind == "qident"))
        i += 1
    name = " ".join(w for w, _ in words)
    if not (len(words) == 1 and words[0][1]):  # "char" (quoted) is not char
        name = TYPE_SYNONYMS.get(name, name)
    return name + ("[]" if array else "")


def is_type_only(tokens):
    """Are these tokens a type alone (no argument name before it)?"""
    stripped, depth = [], 0
    for t in tokens:  # typmods and array bounds dropped
        if t.kind == "punct" and t.value in "([":
            depth += 1
        elif t.kind == "punct" and t.value in ")]":
            depth -= 1
        elif depth == 0:
            stripped.append(t)
    words = [t.value for t in stripped if t.kind in ("word", "qident") and t.value != "array"]
    dots = sum(1 for t in stripped if t.kind == "punct" and t.value == ".")
    if " ".join(words) in MULTIWORD_TYPES:
        return True
    return len(words) == dots + 1  # type, or schema.type


def signature(arg_tokens):
    """The identity of a routine's argument list: its input argument types."""
    types = []
    for arg in split_top(arg_tokens):
        if not arg:
            continue
        # DEFAULT expr / = expr
        for k, t in enumerate(arg):
            if (t.kind == "word" and t.value == "default") or (t.kind == "op" and t.value == "="):
                arg = arg[:k]
                break
        mode = "in"
        if arg and arg[0].kind == "word" and arg[0].value in ARG_MODES and len(arg) > 1:
            mode = arg[0].value
            arg = arg[1:]
        if mode == "out":
            continue
        if not is_type_only(arg):
            arg = arg[1:]  # its name
        types.append(type_name(arg))
    return ",".join(types)


def default_schema():
    """The extension's schema (the control file's `schema = ...`): where unqualified names live."""
    try:
        m = re.search(r"^\s*schema\s*=\s*'?([A-Za-z_][A-Za-z0-9_]*)", read(os.path.join(ROOT, "embedstack.control")), re.M)
    except ParseError:
        m = None
    return m.group(1).lower() if m else None


DEFAULT_SCHEMA = None  # set by main()


def qualified_name(tokens):
    """schema.name of leading name tokens (unqualified: in the extension's schema), and the
    number of tokens used."""
    parts, i = [], 0
    while i < len(tokens):
        t = tokens[i]
        if t.kind not in ("word", "qident"):
            break
        parts.append(t.value)
        i += 1
        if i < len(tokens) and tokens[i].kind == "punct" and tokens[i].value == ".":
            i += 1
            continue
        break
    if len(parts) == 1 and DEFAULT_SCHEMA:
        parts.insert(0, DEFAULT_SCHEMA)
    return ".".join(parts), i


ROUTINE_KINDS = {"function": "function", "procedure": "procedure", "aggregate": "aggregate", "routine": "function"}


class Obj:
    """A function, procedure, aggregate or view of an install script."""

    def __init__(self, key, kind, display, stmt, body, name_at, name_len):
        self.key, self.kind, self.display, self.stmt, self.body = key, kind, display, stmt, body
        # Compared: the statement with its name as qualified_name spells it (schema added).
        t = stmt.tokens
        name = (("name", qualified_name(t[name_at : name_at + name_len])[0]),)
        self.canon = _without_or_replace(canonical(t[:name_at]) + name + canonical(t[name_at + name_len :]))


def _without_or_replace(canon):
    if len(canon) > 3 and canon[0] == ("word", "create") and canon[1:3] == (("word", "or"), ("word", "replace")):
        return canon[:1] + canon[3:]
    return canon


def routine_key(name_tokens_and_args):
    name, used = qualified_name(name_tokens_and_args)
    rest = name_tokens_and_args[used:]
    if rest and rest[0].kind == "punct" and rest[0].value == "(":
        close = matching_paren(rest, 0)
        return f"{name}({signature(rest[1:close])})", used + close + 1
    return name, used  # name only (DROP FUNCTION f;)


def classify(stmt):
    """('object', Obj) | ('comment', key, value, objkey) | ('drop', kind, [keys]) | ('other', None)."""
    toks = stmt.tokens
    w = stmt.words(8)
    if w[0] == "create":
        i = 1
        if w[1:3] == ["or", "replace"]:
            i = 3
        while i < len(w) and w[i] in ("temp", "temporary", "recursive", "trusted"):
            i += 1
        kind = w[i] if i < len(w) else None
        if kind == "materialized" and i + 1 < len(w) and w[i + 1] == "view":
            kind, i = "materialized view", i + 1
        if kind in ROUTINE_KINDS:
            key, used = routine_key(toks[i + 1 :])
            if "(" not in key:
                raise ParseError(f"line {stmt.line}: CREATE {kind.upper()} without an argument list")
            body = next((t.value for t in toks[i + 1 + used :] if t.kind == "dollar"), None)
            _, name_len = qualified_name(toks[i + 1 :])
            return ("object", Obj(("routine", key), ROUTINE_KINDS[kind], f"{ROUTINE_KINDS[kind]} {key}", stmt, body,
                                  i + 1, name_len))
        if kind in ("view", "materialized view"):
            name, name_len = qualified_name(toks[i + 1 :])
            return ("object", Obj(("view", name), kind, f"{kind} {name}", stmt, None, i + 1, name_len))
        return ("other", None)
    if w[0] == "comment" and w[1] == "on":
        is_at = next(
            (k for k, t in enumerate(toks) if t.kind == "word" and t.value == "is" and _depth(toks, k) == 0), None
        )
        if is_at is None:
            raise ParseError(f"line {stmt.line}: COMMENT without IS")
        target = toks[2:is_at]
        value_toks = toks[is_at + 1 :]
        if len(value_toks) == 1 and value_toks[0].kind == "word" and value_toks[0].value == "null":
            value = None
        else:
            if not value_toks or any(t.kind != "string" for t in value_toks):
                raise ParseError(f"line {stmt.line}: COMMENT value is not a string literal")
            value = "".join(t.value for t in value_toks)
        kind_words = []
        k = 0
        while k < len(target) and target[k].kind == "word" and not _starts_object(target, k, kind_words):
            kind_words.append(target[k].value)
            k += 1
        ckind = " ".join(kind_words)
        obj = target[k:]
        objkey = None
        if ckind in ROUTINE_KINDS:
            rkey, _ = routine_key(obj)
            kind_words = [ckind]
            ckind, objkey, what = "function", ("routine", rkey), rkey
        elif ckind in ("view", "materialized view"):
            name, _ = qualified_name(obj)
            objkey, what = ("view", name), name
        else:
            what = " ".join(v if kd != "string" else repr(v) for kd, v in canonical(obj))
            what = re.sub(r" ?([.()\[\],]) ?", r"\1", what).replace(",", ", ")
        return ("comment", (ckind, what), value, objkey, " ".join(kind_words))
    if w[0] == "alter" and w[1] in ROUTINE_KINDS and w[1] != "aggregate":
        return ("alter", ("routine", routine_key(toks[2:])[0]))
    if w[0] == "alter" and w[1] == "view":
        j = 4 if w[2:4] == ["if", "exists"] else 2
        return ("alter", ("view", qualified_name(toks[j:])[0]))
    if w[0] == "alter" and w[1] == "table":
        # ALTER TABLE [IF EXISTS] [ONLY] name ... DROP COLUMN [IF EXISTS] c, ...: those columns' comments go too.
        j = 2
        while j < len(w) and w[j] in ("if", "exists", "only"):
            j += 1
        table, used = qualified_name(toks[j:])
        cols = []
        for action in split_top(toks[j + used :]):
            aw = [t.value for t in action if t.kind in ("word", "qident")]
            if aw[:2] == ["drop", "column"]:
                aw = aw[2:]
                if aw[:2] == ["if", "exists"]:
                    aw = aw[2:]
                if aw:
                    cols.append(("column", f"{table}.{aw[0]}"))
        return ("gone", cols) if cols else ("other", None)
    if w[0] == "drop":
        i = 1
        kind = w[1]
        if kind == "materialized" and w[2] == "view":
            kind, i = "materialized view", 2
        if kind not in ROUTINE_KINDS and kind not in ("view", "materialized view"):
            return ("other", None)
        j = i + 1
        if w[j : j + 2] == ["if", "exists"]:
            j += 2
        rest = list(toks[j:])
        while rest and rest[-1].kind == "word" and rest[-1].value in ("cascade", "restrict"):
            rest = rest[:-1]
        keys = []
        for part in split_top(rest):
            if kind in ROUTINE_KINDS:
                keys.append(("routine", routine_key(part)[0]))
            else:
                keys.append(("view", qualified_name(part)[0]))
        return ("drop", kind, keys)
    return ("other", None)


# COMMENT ON <kind words> <object>: where the kind ends (object types of more than one word).
MULTI_KINDS = (
    "event trigger",
    "foreign table",
    "foreign data wrapper",
    "materialized view",
    "access method",
    "operator class",
    "operator family",
    "text search configuration",
    "text search dictionary",
    "text search parser",
    "text search template",
    "large object",
    "procedural language",
)


def _starts_object(target, k, kind_words):
    if not kind_words:
        return False
    so_far = " ".join(kind_words)
    nxt = so_far + " " + target[k].value
    return not any(m == nxt or m.startswith(nxt + " ") for m in MULTI_KINDS)


def _depth(toks, k):
    d = 0
    for t in toks[:k]:
        if t.kind == "punct" and t.value in "([":
            d += 1
        elif t.kind == "punct" and t.value in ")]":
            d -= 1
    return d


class Script:
    def __init__(self, path, text):
        self.path = path
        self.objects = {}  # key -> Obj (the last definition)
        self.order = []  # keys in order of first definition
        self.comments = {}  # (kind, what) -> value (the last)
        self.comment_stmts = {}  # (kind, what) -> Statement
        self.comment_obj = {}  # (kind, what) -> object key or None
        self.drops = []  # (kind, key)
        self.creates = {}  # key -> [Obj, ...] in order
        self.others = []  # Statement
        self.altered = {}  # routine key -> line of an ALTER FUNCTION / PROCEDURE
        self.gone_comments = set()  # comment keys of columns the script drops
        for st in statements(text):
            try:
                c = classify(st)
            except ParseError as e:
                raise ParseError(f"{path}: {e}") from None
            if c[0] == "object":
                obj = c[1]
                if obj.key not in self.objects:
                    self.order.append(obj.key)
                self.objects[obj.key] = obj
                self.creates.setdefault(obj.key, []).append(obj)
            elif c[0] == "comment":
                _, ckey, value, objkey, kind_word = c
                self.comments[ckey] = value
                COMMENT_KINDS[ckey] = kind_word
                self.comment_stmts[ckey] = st
                self.comment_obj[ckey] = objkey
            elif c[0] == "alter":
                self.altered[c[1]] = st.line
                self.others.append(st)
            elif c[0] == "gone":
                self.gone_comments.update(c[1])
                self.others.append(st)
            elif c[0] == "drop":
                for key in c[2]:
                    self.drops.append((c[1], key))
                    self.objects.pop(key, None)
            else:
                self.others.append(st)

    def dropped(self, key):
        for _, k in self.drops:
            if k == key or (k[0] == key[0] == "routine" and "(" not in k[1] and key[1].split("(")[0] == k[1]):
                return True
        return False


def read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ParseError(f"cannot read {path}: {e.strerror}") from None


def current_schema(pg):
    """`cargo pgrx schema` of the working tree, as text (with the Cargo features scripts/env.sh
    exports for the PostgreSQL major $PG, when set)."""
    if not pg and os.environ.get("PG"):
        pg = "pg" + os.environ["PG"]
    features = os.environ.get("ES_FEATURES", "").split()
    with tempfile.TemporaryDirectory(prefix="upgrade-delta.") as d:
        out = os.path.join(d, "schema.sql")
        cmd = ["cargo", "pgrx", "schema"] + ([pg] if pg else []) + features + ["-o", out]
        print(f"upgrade-delta: {' '.join(cmd)}", file=sys.stderr)
        r = subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr, stderr=sys.stderr)
        if r.returncode != 0:
            raise ParseError(f"{' '.join(cmd)} failed (exit {r.returncode})")
        return read(out)


# ---------------------------------------------------------------------------------------------
# The delta
# ---------------------------------------------------------------------------------------------


def body_ws(body):
    return None if body is None else " ".join(body.split())


class Delta:
    def __init__(self, old, new, ignore_body_ws):
        self.old, self.new = old, new
        self.added = [k for k in new.order if k in new.objects and k not in old.objects]
        self.removed = [k for k in old.order if k in old.objects and k not in new.objects]
        self.changed = []
        self.ws_only = set()
        for k in new.order:
            if k in new.objects and k in old.objects:
                a, b = old.objects[k], new.objects[k]
                if a.canon != b.canon:
                    if _strip_bodies(a.canon) == _strip_bodies(b.canon) and body_ws(a.body) == body_ws(b.body):
                        if ignore_body_ws:
                            continue
                        self.ws_only.add(k)
                    self.changed.append(k)
        self.comments_added = [c for c in new.comments if c not in old.comments and new.comments[c] is not None]
        self.comments_changed = [
            c for c in new.comments if c in old.comments and (old.comments[c] or None) != (new.comments[c] or None)
        ]
        self.comments_removed = [
            c
            for c in old.comments
            if old.comments[c] is not None
            and c not in new.comments
            and not (old.comment_obj.get(c) and old.comment_obj[c] not in new.objects)
        ]
        oc = {canonical(s.tokens) for s in old.others}
        nc = {canonical(s.tokens) for s in new.others}
        self.others_added = [s for s in new.others if canonical(s.tokens) not in oc]
        self.others_removed = [s for s in old.others if canonical(s.tokens) not in nc]


def _strip_bodies(canon):
    return tuple(("dollar", "") if k == "dollar" else (k, v) for k, v in canon)


COMMENT_KINDS = {}  # comment key -> the object type as a script spelled it (PROCEDURE, ...)


def comment_label(ckey):
    return f"COMMENT ON {COMMENT_KINDS.get(ckey, ckey[0]).upper()} {ckey[1]}"


def short(st, width=110):
    one = " ".join(st.text.split())
    return one if len(one) <= width else one[: width - 3] + "..."


def print_list(d, out):
    for k in d.removed:
        print(f"- {d.old.objects[k].display}", file=out)
    for k in d.added:
        print(f"+ {d.new.objects[k].display}", file=out)
    for k in d.changed:
        note = " (whitespace inside the body only)" if k in d.ws_only else ""
        print(f"~ {d.new.objects[k].display}{note}", file=out)
    for c in d.comments_added:
        print(f"+ {comment_label(c)}", file=out)
    for c in d.comments_changed:
        print(f"~ {comment_label(c)}", file=out)
    for c in d.comments_removed:
        print(f"- {comment_label(c)}", file=out)
    for s in d.others_removed:
        print(f"? removed (other): {short(s)}", file=out)
    for s in d.others_added:
        print(f"? added (other): {short(s)}", file=out)
    print(
        f"-- {len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed objects; "
        f"{len(d.comments_added)} added, {len(d.comments_changed)} changed, {len(d.comments_removed)} removed comments; "
        f"{len(d.others_added) + len(d.others_removed)} other statements differ",
        file=out,
    )


def or_replace(text):
    return re.sub(r"\A(\s*)create\s+(function|procedure|view)\b", r"\1CREATE OR REPLACE \2", text, count=1, flags=re.I)


def print_skeleton(d, old_v, new_v, src_old, src_new, out):
    p = lambda s="": print(s, file=out)  # noqa: E731
    p(f"-- embedstack {old_v} -> {new_v}: TODO say what this release changes. Only what changed; each change says why.")
    p(f"-- Skeleton from scripts/upgrade-delta.py ({src_old} -> {src_new}); check the edited script with")
    p(f"-- scripts/upgrade-delta.py --check sql/embedstack--{old_v}--{new_v}.sql")
    p(f"\\echo Use \"ALTER EXTENSION embedstack UPDATE TO '{new_v}'\" to load this file. \\quit")
    done_comments = set()
    for k in d.removed:
        o = d.old.objects[k]
        p()
        p(f"-- TODO why: {o.display} is gone.")
        kind = "FUNCTION" if o.kind == "function" else o.kind.upper()
        p(f"DROP {kind} {k[1]};")
    for k in d.new.order:
        if k not in d.added and k not in d.changed:
            continue
        o = d.new.objects[k]
        recreated = k in d.added or o.kind in ("aggregate", "materialized view")
        p()
        if k in d.added:
            p(f"-- TODO why: new {o.display}.")
            p(o.stmt.text)
        elif recreated:
            p(f"-- TODO why: {o.display} changed (dropped and created again: no CREATE OR REPLACE for it).")
            p(f"DROP {o.kind.upper()} {k[1]};")
            p(o.stmt.text)
        else:
            note = " (whitespace inside the body only: prosrc differs)" if k in d.ws_only else ""
            p(f"-- TODO why: {o.display} changed{note}.")
            p(or_replace(o.stmt.text))
        # Its comments: all of them for an object created (again), else the added or changed ones.
        for c, objkey in d.new.comment_obj.items():
            if objkey == k and c not in done_comments and (recreated or c in d.comments_added or c in d.comments_changed):
                done_comments.add(c)
                p(d.new.comment_stmts[c].text)
    rest = [c for c in d.comments_added + d.comments_changed if c not in done_comments]
    gone = [c for c in d.comments_removed]
    if rest or gone:
        p()
        p("-- TODO why: comments added or changed.")
        for c in rest:
            p(d.new.comment_stmts[c].text)
        for c in gone:
            p(f"{comment_label(c)} IS NULL;")
    if d.others_added or d.others_removed:
        p()
        p("-- Other statements differ (not generated: write what they need by hand, e.g. ALTER TABLE, GRANT):")
        for s in d.others_removed:
            p(f"--   removed: {short(s)}")
        for s in d.others_added:
            p(f"--   added:   {short(s)}")


def first_difference(a, b):
    """A short unified diff of two statement texts (CREATE OR REPLACE and CREATE alike)."""
    if re.match(r"\s*create\s+or\s+replace\b", a, re.I):
        b = or_replace(b)
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "upgrade script", "install script", n=1, lineterm=""))
    return "\n".join("      " + x for x in lines[:14]) + ("\n      ..." if len(lines) > 14 else "")


def check(d, up, ignore_body_ws):
    """Problems of upgrade script `up` (a Script) for delta d."""
    problems, notes = [], []
    new = d.new

    def same(a, b):
        if a.canon == b.canon:
            return True
        return ignore_body_ws and _strip_bodies(a.canon) == _strip_bodies(b.canon) and body_ws(a.body) == body_ws(b.body)

    for k in d.added + d.changed:
        o = new.objects[k]
        what = "added" if k in d.added else "changed"
        restated = up.creates.get(k)
        if not restated and k in up.altered and k in d.changed:
            notes.append(f"{o.display} (changed) is altered at line {up.altered[k]} (ALTER, not compared: the "
                         f"upgrade-equals-fresh-install test compares it)")
        elif not restated:
            problems.append(f"{o.display} ({what}) is not restated in the upgrade script")
        elif not same(restated[-1], o):
            problems.append(
                f"{o.display} ({what}) is restated at line {restated[-1].stmt.line}, but not as the install script "
                f"defines it:\n{first_difference(restated[-1].stmt.text, o.stmt.text)}"
            )
    for k, objs in up.creates.items():
        if k in d.added or k in d.changed:
            continue
        if k in new.objects and not same(objs[-1], new.objects[k]):
            problems.append(
                f"{new.objects[k].display} is restated at line {objs[-1].stmt.line} (it did not change), but not as "
                f"the install script defines it:\n{first_difference(objs[-1].stmt.text, new.objects[k].stmt.text)}"
            )
        elif k not in new.objects:
            problems.append(f"{objs[-1].display} is created at line {objs[-1].stmt.line}, but the install script has no such object")
    for k in d.removed:
        if not up.dropped(k):
            problems.append(f"{d.old.objects[k].display} (removed) is not dropped in the upgrade script")
    for k in new.objects:
        if k in d.old.objects and k not in d.removed and up.dropped(k) and k not in up.creates:
            problems.append(f"{new.objects[k].display} is dropped by the upgrade script but not created again")
    # Comments: added or changed ones set to the current text; those of dropped and re-created
    # objects set again (DROP takes the comment with it).
    need = set(d.comments_added) | set(d.comments_changed)
    for c, objkey in new.comment_obj.items():
        if objkey and (up.dropped(objkey) or objkey in d.added) and new.comments.get(c) is not None:
            need.add(c)
    for c in sorted(need):
        want = new.comments[c]
        if c not in up.comments:
            problems.append(f"{comment_label(c)} (added or changed) is not set in the upgrade script")
        elif up.comments[c] != want:
            problems.append(f"{comment_label(c)} is set at line {up.comment_stmts[c].line} to another text than the install script's")
    for c in d.comments_removed:
        if c in up.gone_comments:
            continue
        if c not in up.comments or up.comments[c] is not None:
            problems.append(f"{comment_label(c)} (removed) is not set to NULL in the upgrade script")
    for c in up.comments:
        if c not in need and c not in d.comments_removed and up.comments[c] != new.comments.get(c):
            problems.append(f"{comment_label(c)} is set at line {up.comment_stmts[c].line} to another text than the install script's")
    return problems, notes


def version_of(path, pattern):
    m = re.search(pattern, os.path.basename(path))
    return m.group(1) if m else None


def main(argv):
    ap = argparse.ArgumentParser(
        description="Upgrade-script delta between the previous release's install script and the current one.",
        epilog="See the header of this script for the comparison rules.",
    )
    ap.add_argument("--from", dest="old", metavar="OLD_INSTALL", help="the previous release's install script "
                    "(default with --check: sql/releases/embedstack--OLD.sql, OLD from the upgrade script's name)")
    ap.add_argument("--to", dest="new", metavar="NEW_INSTALL", help="the current install script (default: cargo pgrx schema)")
    ap.add_argument("--pg", metavar="pgNN", help="PostgreSQL version label for cargo pgrx schema (default: pg$PG when $PG is set)")
    ap.add_argument("--check", metavar="UPGRADE_SCRIPT", help="check a committed upgrade script against the delta")
    ap.add_argument("--list", action="store_true", help="print the list of differences instead of a skeleton")
    ap.add_argument("--ignore-body-whitespace", action="store_true",
                    help="a function body whose text differs only in whitespace is not a change")
    args = ap.parse_args(argv)
    global DEFAULT_SCHEMA
    DEFAULT_SCHEMA = default_schema()
    try:
        old_path = args.old
        if old_path is None:
            v = version_of(args.check, r"^embedstack--([^-]+(?:-[^-]+)*?)--[^-].*\.sql$") if args.check else None
            if not v:
                ap.error("--from OLD_INSTALL is required (or --check sql/embedstack--OLD--NEW.sql)")
            old_path = os.path.join(ROOT, "sql", "releases", f"embedstack--{v}.sql")
        old = Script(old_path, read(old_path))
        if args.new:
            new_src = args.new
            new = Script(args.new, read(args.new))
        else:
            new_src = "cargo pgrx schema"
            new = Script(new_src, current_schema(args.pg))
        d = Delta(old, new, args.ignore_body_whitespace)
        if args.check:
            up = Script(args.check, read(args.check))
            problems, notes = check(d, up, args.ignore_body_whitespace)
            for note in notes:
                print(f"upgrade-delta: note: {note}")
            nc = len(d.comments_added) + len(d.comments_changed) + len(d.comments_removed)
            if problems:
                print(f"upgrade-delta: {args.check}: {len(problems)} problem(s) ({old_path} -> {new_src}):")
                for pr in problems:
                    print(f"  - {pr}")
                return 1
            print(
                f"upgrade-delta: {args.check} restates the delta {old_path} -> {new_src}: "
                f"{len(d.added)} added, {len(d.changed)} changed, {len(d.removed)} removed objects, {nc} comments "
                f"({len(new.objects)} objects compared)"
                + (f"; {len(d.others_added) + len(d.others_removed)} other statements differ (not checked)"
                   if d.others_added or d.others_removed else "")
            )
            return 0
        if args.list:
            print_list(d, sys.stdout)
            return 0
        old_v = version_of(old_path, r"^embedstack--(.+)\.sql$") or "OLD"
        new_v = version_of(new_src, r"^embedstack--(.+)\.sql$")
        if not new_v:
            m = re.search(r'^version\s*=\s*"([^"]+)"', read(os.path.join(ROOT, "Cargo.toml")), re.M)
            new_v = m.group(1) if m else "NEW"
        print_skeleton(d, old_v, new_v, old_path, new_src, sys.stdout)
        return 0
    except ParseError as e:
        print(f"upgrade-delta: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends it quietly
    sys.exit(main(sys.argv[1:]))
