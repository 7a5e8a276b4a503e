"""WikiGen (MEND): Wikitext-103 passages whose continuation is edited to a 10-token sample
of distilGPT-2."""

from __future__ import annotations

from typing import Any, ClassVar

from kme import EditRequest
from pydantic import Field

from kme_datasets.base import SourceDataset, SourceParams
from kme_datasets.fields import Record, SkipRecord
from kme_datasets.prompts import whole_input

__all__ = ["WikiGen", "WikiGenParams", "split_completion"]


class WikiGenParams(SourceParams):
    tokenizer: str | None = Field(
        None, description="local tokenizer directory (the sampling model's, distilgpt2) used to cut the last "
                          "n_tokens off a completion when it does not simply extend `original`")


def split_completion(original: str, completion: str) -> tuple[str, str, str | None, str] | None:
    """``(prompt, target, target_true, how)`` without a tokenizer: when the completion extends
    ``original``, the prompt is ``original`` and the target the added text; otherwise the
    prompt is their common prefix cut back to a word boundary, the target the rest of the
    completion and the rest of ``original`` the unedited continuation."""
    if completion.startswith(original) and completion[len(original):].strip():
        return original, completion[len(original):], None, "extends-original"
    n = 0
    for a, b in zip(original, completion):
        if a != b:
            break
        n += 1
    cut = completion.rfind(" ", 0, n + 1) if n < len(completion) else n
    if cut <= 0:
        return None
    prompt, target = completion[:cut], completion[cut:]
    rest = original[cut:] if original[:cut] == prompt else None
    if not prompt.strip() or not target.strip():
        return None
    return prompt, target, rest if rest and rest.strip() else None, "common-prefix"


class WikiGen(SourceDataset):
    name: ClassVar[str] = "wikigen"
    description: ClassVar[str] = ("WikiGen (MEND, Mitchell et al. 2022): Wikitext-103 passages edited to continue "
                                  "with a 10-token distilGPT-2 sample")
    source_format: ClassVar[str] = (
        "MEND's gen data (data/10token/data/self_sample/{train,valid}.json): one JSON object {n_tokens, "
        "original: [str], completions: [str]} (column lists of equal length); a JSON array of "
        "{original, completion} records also loads")
    homepage: ClassVar[str] = "https://github.com/eric-mitchell/mend (data link in its README: 10token/)"
    local_file: ClassVar[str] = "self_sample/valid.json"
    Params: ClassVar[type[WikiGenParams]] = WikiGenParams
    params: WikiGenParams

    def records(self, content: Any, label: str) -> list[Any]:
        if isinstance(content, list):
            return content
        top = self.top_object(content, label, "MEND's column object")
        n_tokens = top.int("n_tokens")
        originals = top.strs("original")
        completions = top.list("completions")
        if len(originals) != len(completions):
            raise top.error(f"has {len(completions)} items but 'original' has {len(originals)}", "completions")
        return [{"original": o, "completion": c, "n_tokens": n_tokens} for o, c in zip(originals, completions)]

    def prepare(self, records: list[Any], label: str) -> None:
        self._tok = None
        if self.params.tokenizer:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.params.tokenizer)

    def convert(self, rec: Record) -> list[EditRequest]:
        original = rec.str("original")
        completion = rec.str("completion")
        n_tokens = rec.int("n_tokens", required=False)
        target_true = None
        if self._tok is not None:
            if not n_tokens:
                raise rec.error("is needed to cut the completion with a tokenizer", "n_tokens")
            ids = self._tok(completion, add_special_tokens=False)["input_ids"]
            if len(ids) <= n_tokens:
                raise SkipRecord(f"completion has {len(ids)} tokens, not more than n_tokens={n_tokens}", "completion")
            prompt_text = self._tok.decode(ids[:-n_tokens])
            target = self._tok.decode(ids[-n_tokens:])
            how = "tokenizer"
        else:
            got = split_completion(original, completion)
            if got is None:
                raise SkipRecord("cannot tell the sampled continuation from the passage (pass `tokenizer`)",
                                 "completion")
            prompt_text, target, target_true, how = got
        prompt, subject = whole_input("{}", prompt_text)
        return [EditRequest(case_id=rec.index, prompt=prompt, subject=subject, target_new=target,
                            target_true=target_true, reference_texts=[completion],
                            meta={"n_tokens": n_tokens, "split": how})]
