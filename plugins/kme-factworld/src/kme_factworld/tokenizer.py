"""The fact world's byte-level BPE tokenizer, trained offline with ``tokenizers``.

Objects should be single tokens with distinct first tokens within a relation (so a top-1
prediction names one object), and each word of a subject's name one token. Plain BPE on the
world's text splits many invented words, so the object and name vocabulary is repeated in
the tokenizer's training text until each word becomes a token of its own. Every encoded text starts with ``<|endoftext|>`` (the documents the model
was trained on start with it too); ``add_special_tokens=False`` leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kme_factworld.world import World

__all__ = ["train_tokenizer", "object_token_report", "SPECIAL", "VOCAB_SIZE"]

SPECIAL = "<|endoftext|>"
VOCAB_SIZE = 3072
OBJECT_REPEATS = 400


def _object_words(world: World) -> list[str]:
    """Objects' words and subjects' name words: each should be one token, so that a
    subject's last token is its own (editors read subjects there)."""
    words: set[str] = set()
    for rel in world.relations:
        for o in world.objects(rel):
            words.update(o.split(" "))
    for s in world.subjects:
        words.update(s.name.split(" "))
    return sorted(words)


def train_tokenizer(world: World, texts: Iterable[str], vocab_size: int = VOCAB_SIZE,
                    max_length: int = 512) -> Any:
    """Train the tokenizer on ``texts`` plus the repeated object vocabulary; return a
    ``PreTrainedTokenizerFast`` (loadable with ``AutoTokenizer.from_pretrained``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[SPECIAL],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    objects = " ".join(" " + w for w in _object_words(world))
    tok.train_from_iterator(list(texts) + [objects] * OBJECT_REPEATS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL} $A", pair=f"{SPECIAL} $A {SPECIAL} $B", special_tokens=[(SPECIAL, tok.token_to_id(SPECIAL))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL, pad_token=SPECIAL,
                                   model_max_length=max_length)


def object_token_report(world: World, tokenizer: Any) -> dict[str, Any]:
    """How objects tokenise: the share of single-token words and the relations whose objects
    share a first token (a top-1 prediction would not tell them apart)."""
    single = total = 0
    collisions: dict[str, list[str]] = {}
    for rel in world.relations:
        firsts: dict[int, str] = {}
        for o in world.objects(rel):
            ids = tokenizer(" " + o, add_special_tokens=False)["input_ids"]
            word_ids = tokenizer(" " + o.split(" ")[0], add_special_tokens=False)["input_ids"]
            single += len(word_ids) == 1
            total += 1
            if ids[0] in firsts:
                collisions.setdefault(rel, []).append(f"{firsts[ids[0]]}/{o}")
            firsts[ids[0]] = o
    return {"single_token_share": single / max(1, total), "first_token_collisions": collisions}
