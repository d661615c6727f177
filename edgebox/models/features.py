# ruff: noqa: RUF001, RUF003, E501
"""Text features of the injection classifier, shared by the build (training) and run time.

Theory of operation: the same pure-Python/numpy code produces the features at build time and on the
box, so a trained head sees identical inputs in both places. Three blocks, concatenated:

1. the MiniLM sentence embedding (computed by `Embedder`, possibly reused from the semantic cache);
2. hashed character n-grams (3..5) of the *normalised* text: NFKC, zero-width/bidi controls removed,
   Cyrillic/Greek look-alikes folded to Latin inside mixed-script words, lower-cased, whitespace
   collapsed; counts are log-scaled and L2-normalised. Hashing is a fixed polynomial hash in numpy
   (never Python's salted `hash`), so it is stable across processes and machines;
3. a few rule signals that n-grams and embeddings miss: invisible characters, homoglyph words,
   encoded payloads (base64 / base32 / hex / binary / rot13 / reversed text) that decode to
   instruction-like text, chat-role markers, text addressing an AI agent (tool calls, memory,
   "before you reply"), and a multilingual lexicon of override / exfiltration / persona phrases.

`decisive_rule_score` is the one place rules act alone: an encoded payload that decodes to an
override instruction, or invisible characters hiding one, is scored high whatever the head says.
The classifier featurises windows of at most 128 tokens (edgebox.models.injection), so the cost
per call is bounded and every part of a long input is looked at.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

NGRAM_DIM = 1 << 14
NGRAM_SIZES = (3, 4, 5)
FEATURE_VERSION = 3

_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufe00-\ufe0f]"
)
_HOMOGLYPHS = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
        "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ɡ": "g", "ӏ": "l", "А": "A", "В": "B",
        "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X", "І": "I",
        "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "κ": "k", "τ": "t", "υ": "u", "χ": "x", "ε": "e",
        "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
        "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    }
)  # fmt: skip
_WORD = re.compile(r"\w+", re.UNICODE)
_SPACE = re.compile(r"\s+")

# Multilingual lexicon (lower-cased, normalised text). Deliberately about *overriding instructions*,
# *revealing hidden configuration* and *persona jailbreaks*, not about editing verbs ("rewrite",
# "ignore the typos", "act as an editor" must stay benign).
_OVERRIDE = re.compile(
    r"\b(ignore|disregard|forget|override|bypass|skip|drop|abandon|discard)\b[^.\n]{0,40}?"
    r"\b(previous|prior|above|earlier|preceding|former|original|initial|system|all|your|any|every|the)\b"
    r"[^.\n]{0,30}?\b(instructions?|rules|guidelines|directives|prompts?|guardrails|restrictions|"
    r"policies|polic(y|ies)|programming|constraints|commands|orders|context)\b"
    r"|\b(ignoriere|vergiss|missachte|übergehe)\b[^.\n]{0,40}?\b(anweisungen|instruktionen|regeln|vorgaben|befehle)"
    r"|\b(ignore[zs]?|oublie[zs]?|oubliez)\b[^.\n]{0,40}?\b(instructions|consignes|règles|directives)"
    r"|\b(ignora|ignore|olvida|olvide|olvídate|descarta)\b[^.\n]{0,40}?\b(instrucciones|reglas|indicaciones|directrices)"
    r"|\b(ignora|dimentica|trascura)\b[^.\n]{0,40}?\b(istruzioni|regole|indicazioni|direttive)"
    r"|\b(ignore|esqueça|esqueca|desconsidere|ignora)\b[^.\n]{0,40}?\b(instruções|instrucoes|regras|diretrizes)"
    r"|\b(negeer|vergeet)\b[^.\n]{0,40}?\b(instructies|regels|richtlijnen)"
    r"|\b(игнорируй|игнорируйте|забудь|забудьте)\b[^.\n]{0,40}?(инструкци|правил|указани)"
    r"|(忽略|无视|忘记|忘掉)[^。\n]{0,20}?(指令|指示|规则|提示)"
    r"|(無視|忘れ)[^。\n]{0,20}?(指示|命令|ルール|指令)|(指示|命令|ルール)[^。\n]{0,10}?(無視|忘れ)"
    # "forget everything (you were told)"
    r"|\bforget (everything|all) (((that|what) )?you('ve| have)? (were|been) (told|given)|above|before this)\b"
    r"|\b(vergiss|vergesst|vergessen sie) alles\b|\boublie(z)? tout\b|\bolvida(te de)? todo\b"
    r"|\bdimentica tutto\b|\besque[çc]a tudo\b|\bvergeet alles\b|\bzapomnij (o )?wszystk"
    r"|забудь(те)? (всё|все)|(忘记|忘掉)(一切|所有)|(すべて|全部)(を)?忘れ"
)
_EXFIL = re.compile(
    r"\b(system prompt|system message|hidden (prompt|instructions)|initial instructions|original instructions|"
    r"developer (message|instructions)|your instructions (verbatim|word for word)|prompt (verbatim|word for word))\b"
    r"|\b(reveal|show|print|tell|give|output|send|share|leak|display|repeat|dump|list|email|forward|post|"
    r"collect|steal|exfiltrate|extract|harvest|upload)\b"
    r"[^.\n]{0,30}?\b(secret key|api keys?|passwords?|passphrase|credentials?|tokens?|private keys?|"
    r"customer (data|database|emails?)|chat history|conversation history)\b"
    r"|\b(systemprompt|systemanweisung|prompt système|prompt del sistema|prompt do sistema)\b"
    r"|\b(verrate|zeig|gib|nenne|sende|schick)\w*\b[^.\n]{0,30}?\b(geheimnis|passwort|kennwort|schlüssel|zugangsdaten)"
    r"|\b(révèle|donne|montre|envoie|dis)\w*\b[^.\n]{0,30}?\b(mot de passe|secret|clé|identifiants)"
    r"|\b(revela|dime|muestra|envía|da)\w*\b[^.\n]{0,30}?\b(contraseña|clave|secreto|credenciales)"
    r"|\b(rivela|dimmi|mostra|invia)\w*\b[^.\n]{0,30}?\b(password|segreto|chiave|credenziali)"
    r"|\b(revele|diga|mostre|envie)\w*\b[^.\n]{0,30}?\b(senha|segredo|chave|credenciais)"
    r"|системн\w* (промпт|подсказк|инструкц)|(系统提示|系統提示|システムプロンプト)"
)
_PERSONA = re.compile(
    r"\b(dan|do anything now|developer mode|dev mode|jailbreak\w*|jail-?broken|god mode|"
    r"unrestricted|unfiltered|uncensored|no (restrictions|limitations|limits|rules|filters|boundaries|guidelines)|"
    r"without (any )?(restrictions|limitations|filters|censorship|rules|guidelines)|"
    r"stay in character|you are no longer|you are now (free|unrestricted|a|an|in)|from now on,? you (are|will)|"
    r"pretend (that )?you (are|have) no|evil (ai|assistant|confidant)|opposite mode|anti-?dan|"
    r"not bound by (any |the )?(rules|restrictions|guidelines|policies|ethics)|"
    r"(without|no|free of|free from) (any )?(moral|ethical|content) (principles|guidelines|restrictions|policies|limits)|"
    r"censorship|moralizing|amoral|unethical (ai|assistant|model|bot)|"
    r"(safety|content) (protocols?|filters?|policies|guidelines) (are |is )?(disabled|off|lifted|suspended|removed)|"
    r"(disable|turn off|bypass|ignore) (your |the |all )?(safety|content) (protocols?|filters?|policies|guidelines|stuff))\b"
    r"|\b(ohne (einschränkungen|regeln|grenzen|filter))\b|\b(sans (restrictions|limites|filtres|règles))\b"
    r"|\b(sin (restricciones|límites|filtros|reglas))\b|\b(senza (restrizioni|limiti|filtri|regole))\b"
    r"|\b(sem (restrições|restricoes|limites|filtros|regras))\b"
)
# "the previous/original rules or instructions" - the object of an override, in 14 languages.
_PRIOR_RULES = re.compile(
    r"\b(previous|prior|earlier|above|preceding|original|initial|old|former)\s+(\w+\s+){0,2}?"
    r"(instructions?|rules|guidelines|directives|prompts?|guardrails|programming)\b"
    r"|\b(vorherigen|bisherigen|obigen|ursprünglichen|früheren|alten)\s+(\w+\s+)?(anweisungen|regeln|vorgaben|instruktionen)"
    r"|\b(instructions|règles|consignes|directives)\s+(\w+\s+)?(précédentes|antérieures|initiales|originales|d'origine)"
    r"|\b(instrucciones|reglas|indicaciones|normas)\s+(\w+\s+)?(anteriores|previas|originales|iniciales)"
    r"|\b(istruzioni|regole|direttive|indicazioni)\s+(\w+\s+)?(precedenti|iniziali|originali|di prima)"
    r"|\b(instruções|instrucoes|regras|diretrizes)\s+(\w+\s+)?(anteriores|iniciais|originais|prévias)"
    r"|\b(vorige|eerdere|oorspronkelijke)\s+(instructies|regels|richtlijnen)"
    r"|\b(poprzednie|wcześniejsze)\s+(instrukcje|polecenia|zasady)"
    r"|\b(instruksi|aturan|perintah)\s+(sebelumnya|awal)"
    r"|\b(önceki|eski)\s+(\w+\s+)?(talimat|kural|komut)"
    r"|(предыдущи|прежни|прошлы|изначальн)\w*\s+(\w+\s+)?(инструкци|правил|указани)"
    r"|(之前|以前|先前|上面|原来|原先)的?(所有)?(指令|规则|指示|提示|設定|设定)"
    r"|(以前|これまで|前|最初)の(すべての|全ての)?(指示|ルール|命令|設定)"
    r"|पिछले\s+(सभी\s+)?(निर्देश|नियम)"
)
# "hidden / secret / system instructions or prompt" - the object of exfiltration, in 13 languages.
_HIDDEN_CONFIG = re.compile(
    r"\b(hidden|secret|confidential|internal|private|system|developer|initial)\s+(\w+\s+)?"
    r"(instructions?|prompts?|rules|configuration|guidelines|directives|notes)\b"
    r"|\b(geheimen?|versteckten?|vertraulichen?|internen?)\s+(anweisungen|regeln|instruktionen|konfiguration)"
    r"|\bsystem(anweisung|prompt|nachricht)\w*"
    r"|\b(instructions|consignes|règles)\s+(cachées|secrètes|confidentielles|internes|système)|prompt système"
    r"|\b(instrucciones|reglas|indicaciones)\s+(ocultas|secretas|confidenciales|internas|del sistema)|prompt del sistema"
    r"|\b(istruzioni|regole)\s+(nascoste|segrete|riservate|interne|di sistema)|prompt di sistema"
    r"|\b(instruções|instrucoes|regras)\s+(ocultas|secretas|confidenciais|internas|do sistema)|prompt do sistema"
    r"|\b(verborgen|geheime)\s+(instructies|regels)|systeemprompt"
    r"|(скрыт|секретн|системн|конфиденциальн)\w*\s+(\w+\s+)?(инструкци|промпт|правил|подсказк)"
    r"|(隐藏|秘密|系统|内部)的?(指令|提示|规则|设定)|(隠された|秘密の|システム|内部の?)(指示|プロンプト|ルール|設定)"
    r"|\b(gizli|sistem)\s+(talimat|komut|kural)\w*"
    r"|(सिस्टम|छिपे|गुप्त)\s+(प्रॉम्प्ट|निर्देश)"
)
# Text that addresses an AI agent reading it, or tells it to act on tools / memory / future replies.
_AGENT_DIRECTIVE = re.compile(
    r"\b(note|message|instructions?|notice) (to|for) (the |any |all )?(ai|assistant|agent|llm|model|chatbot)s?\b"
    r"|\b(ai|assistant|agent|llm|language model|chatbot)s? (reading|processing|summari[sz]ing|integrating|seeing) (this|these)\b"
    r"|\b(before|after) (you )?(reply|replying|answer|answering|respond|responding|summari[sz]ing)\b"
    r"|\b(in|to|at the end of) (every|each|all) (future |subsequent )?(reply|replies|response|responses|answer|answers|summary|summaries|report|reports|message|messages)\b"
    r"|\b(long-term|persistent) memory\b|\bremember (this )?for (all|every) (future )?(tasks?|turns?|conversations?)\b"
    r"|\b(call|use|invoke|run|execute|trigger) (the )?`?[a-z]+_[a-z_]+`?( tool| function)?\b"
)
_ROLE_MARKER = re.compile(
    r"(^|\n)\s*(\[?(system|sys|admin|developer|root)\]?\s*[:>\]]|#{2,}\s*(system|instruction|new instructions?)\b|"
    r"<\|?(im_start|im_end|system|endoftext|eot_id|start_header_id)\|?>|</?(system|instructions?|sys)>|"
    r"\[/?inst\]|<<\s*sys\s*>>|end of (user )?(input|prompt|document|context))"
)
_B64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_B32 = re.compile(r"\b[A-Z2-7]{24,}={0,6}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}[\s:]?){12,}")
_BIN = re.compile(r"(?:[01]{8}\s?){6,}")
_KEYWORDS = re.compile(
    r"ignore|instruction|system prompt|disregard|forget|reveal|password|secret|jailbreak|bypass|override|"
    r"comply|admin|previous"
)

SIGNAL_NAMES = (
    "invisible_chars",
    "homoglyph_words",
    "encoded_payload",
    "encoded_instruction",
    "rot13_instruction",
    "role_marker",
    "agent_directive",
    "reversed_instruction",
    "override_phrase",
    "exfil_phrase",
    "persona_phrase",
    "override_and_exfil",
    "prior_rules_ref",
    "hidden_config_ref",
    "prior_and_hidden",
    "non_ascii_ratio",
)
SIGNAL_DIM = len(SIGNAL_NAMES)
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Normalised:
    text: str
    invisible: int
    homoglyph_words: int


def normalise(text: str) -> Normalised:
    stripped, invisible = _INVISIBLE.subn("", text)
    folded = unicodedata.normalize("NFKC", stripped)
    homoglyph_words = 0

    def fold_word(match: re.Match[str]) -> str:
        nonlocal homoglyph_words
        word = match.group(0)
        if word.isascii():
            return word
        mapped = word.translate(_HOMOGLYPHS)
        if mapped != word and any("a" <= c.lower() <= "z" for c in word):
            homoglyph_words += 1  # Latin mixed with look-alikes: "Іgnоrе" -> "Ignore"
            return mapped
        return word

    folded = _WORD.sub(fold_word, folded)
    folded = _SPACE.sub(" ", folded.lower()).strip()
    return Normalised(text=folded, invisible=invisible, homoglyph_words=homoglyph_words)


def _decoded_payloads(raw: str) -> list[str]:
    """Printable text hidden in base64 / hex / binary runs of the raw input."""
    found: list[str] = []
    for match in _B64.finditer(raw):
        chunk = match.group(0)
        if chunk.isalpha() and (chunk.islower() or chunk.isupper()):
            continue  # a long plain word, not base64
        try:
            data = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=False)
        except (binascii.Error, ValueError):
            continue
        found.append(data.decode("utf-8", "ignore"))
    for match in _B32.finditer(raw):
        chunk = match.group(0)
        try:
            found.append(base64.b32decode(chunk[: len(chunk) // 8 * 8]).decode("utf-8", "ignore"))
        except (binascii.Error, ValueError):
            continue
    for match in _HEX.finditer(raw):
        digits = re.sub(r"[\s:]", "", match.group(0))
        try:
            found.append(bytes.fromhex(digits[: len(digits) // 2 * 2]).decode("utf-8", "ignore"))
        except ValueError:
            continue
    for match in _BIN.finditer(raw):
        bits = re.sub(r"\s", "", match.group(0))
        data = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits) - 7, 8))
        found.append(data.decode("utf-8", "ignore"))
    # Real hidden text has words: printable, with spaces (random letters rarely decode to that).
    return [t for t in found if len(t) >= 6 and " " in t and sum(c.isprintable() for c in t) / len(t) > 0.9]


def signals(raw: str, norm: Normalised) -> FloatArray:
    text = norm.text
    payloads = _decoded_payloads(raw)
    encoded_instruction = any(_KEYWORDS.search(p.lower()) for p in payloads)
    plain_keywords = bool(_KEYWORDS.search(text))
    rot13 = bool(_KEYWORDS.search(codecs.decode(text, "rot13"))) and not plain_keywords
    reversed_text = text[::-1]
    reversed_instruction = not plain_keywords and bool(
        _OVERRIDE.search(reversed_text) or _EXFIL.search(reversed_text)
    )
    override = bool(_OVERRIDE.search(text))
    exfil = bool(_EXFIL.search(text))
    prior = bool(_PRIOR_RULES.search(text))
    hidden = bool(_HIDDEN_CONFIG.search(text))
    non_ascii = sum(not c.isascii() for c in text) / max(1, len(text))
    values = (
        min(norm.invisible, 3) / 3.0,
        min(norm.homoglyph_words, 3) / 3.0,
        1.0 if payloads else 0.0,
        1.0 if encoded_instruction else 0.0,
        1.0 if rot13 else 0.0,
        1.0 if _ROLE_MARKER.search(text) else 0.0,
        1.0 if _AGENT_DIRECTIVE.search(text) else 0.0,
        1.0 if reversed_instruction else 0.0,
        1.0 if override else 0.0,
        1.0 if exfil else 0.0,
        1.0 if _PERSONA.search(text) else 0.0,
        1.0 if override and exfil else 0.0,
        1.0 if prior else 0.0,
        1.0 if hidden else 0.0,
        1.0 if prior and hidden else 0.0,
        non_ascii,
    )
    return np.asarray(values, dtype=np.float32)


def decisive_rule_score(sig: FloatArray) -> float:
    """A score the rules alone justify (0 when they say nothing decisive)."""
    s = dict(zip(SIGNAL_NAMES, sig.tolist(), strict=True))
    if s["encoded_instruction"] or s["rot13_instruction"] or s["reversed_instruction"]:
        return 0.9
    if (s["invisible_chars"] or s["homoglyph_words"]) and (s["override_phrase"] or s["exfil_phrase"]):
        return 0.9
    if s["override_and_exfil"] or s["prior_and_hidden"]:
        return 0.85
    return 0.0


_PRIME = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0xFF51AFD7ED558CCD)
_SALT = {n: np.uint64(0x9E3779B97F4A7C15 * n % (1 << 64)) for n in NGRAM_SIZES}


def ngram_vector(norm_text: str) -> FloatArray:
    """Hashed, log-scaled, L2-normalised character 3..5-gram counts (dense, NGRAM_DIM)."""
    vec = np.zeros(NGRAM_DIM, dtype=np.float32)
    padded = f" {norm_text} "
    codes = np.frombuffer(padded.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    parts = []
    with np.errstate(over="ignore"):
        for n in NGRAM_SIZES:
            if len(codes) < n:
                continue
            h = np.full(len(codes) - n + 1, _SALT[n], dtype=np.uint64)
            for k in range(n):
                h = h * _PRIME + codes[k : len(codes) - n + 1 + k]
            h ^= h >> np.uint64(33)
            h *= _MIX1
            h ^= h >> np.uint64(29)
            parts.append(h % np.uint64(NGRAM_DIM))
    if not parts:
        return vec
    counts = np.bincount(np.concatenate(parts).astype(np.int64), minlength=NGRAM_DIM).astype(np.float32)
    vec = np.log1p(counts)
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def text_features(raw: str) -> tuple[FloatArray, FloatArray, str]:
    """(n-gram vector, signal vector, normalised text) for one input."""
    norm = normalise(raw)
    return ngram_vector(norm.text), signals(raw, norm), norm.text
