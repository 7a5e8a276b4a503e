"""CrowS-Pairs (Nangia et al., 2020) as contrastive pairs for debiasing editors (PCGU).

Each CSV row holds two sentences that differ in a few words: ``sent_more`` (the more
stereotyping one) and ``sent_less``; the benchmark's bias score is the share of rows where a
model finds ``sent_more`` more likely, and PCGU (Yu et al., 2023) evaluates on it. A causal
LM scores continuations of a shared context, so a row becomes one pair on the two sentences'
longest common prefix of words:

* ``prompt``: that prefix (``subject``: its first word);
* ``target_true``: the rest of ``sent_more`` (the advantaged completion);
* ``target_new``: the rest of ``sent_less`` (the disadvantaged completion);
* ``meta``: ``bias_type``, ``stereo_antistereo`` and both full sentences.

Rows whose sentences differ in their first word share no context and are skipped (logged;
``on_unusable: error`` stops instead), as are rows whose two sentences are the same.
"""

from __future__ import annotations

from typing import ClassVar

from kme import EditRequest

from kme_datasets.base import SourceDataset
from kme_datasets.fields import Record, SkipRecord
from kme_datasets.prompts import escape_braces

__all__ = ["CrowSPairs", "split_pair"]


def split_pair(more: str, less: str) -> tuple[str, str, str] | None:
    """``(shared prefix, rest of more, rest of less)`` at the first differing word, or ``None``
    when the sentences differ in their first word or not at all."""
    a, b = more.split(), less.split()
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    if n == 0 or a == b:
        return None
    return " ".join(a[:n]), " ".join(a[n:]), " ".join(b[n:])


class CrowSPairs(SourceDataset):
    """CrowS-Pairs rows as contrastive pairs: advantaged = ``sent_more``, disadvantaged = ``sent_less``."""

    name: ClassVar[str] = "crows-pairs"
    description: ClassVar[str] = ("CrowS-Pairs (Nangia et al. 2020): stereotyping vs less stereotyping sentence pairs, "
                                  "split at their shared prefix into contrastive completions (PCGU's evaluation)")
    source_format: ClassVar[str] = "crows_pairs_anonymized.csv: sent_more, sent_less, stereo_antistereo, bias_type"
    homepage: ClassVar[str] = "https://github.com/nyu-mll/crows-pairs"
    local_file: ClassVar[str] = "crows_pairs_anonymized.csv"

    def convert(self, rec: Record) -> list[EditRequest]:
        more, less = rec.str("sent_more").strip(), rec.str("sent_less").strip()
        parts = split_pair(more, less)
        if parts is None:
            raise SkipRecord("sent_more and sent_less share no leading word (or are the same)", "sent_less")
        prefix, adv, dis = (escape_braces(x) for x in parts)
        if not adv or not dis:
            raise SkipRecord("one sentence is a prefix of the other", "sent_less")
        case = rec.raw("") if rec.has("") and str(rec.raw("")).strip() else rec.index
        return [EditRequest(case_id=case, prompt=prefix, subject=prefix.split()[0], target_true=adv,
                            target_new=dis,
                            meta={**rec.present("bias_type", "stereo_antistereo"), "sent_more": more,
                                  "sent_less": less})]
