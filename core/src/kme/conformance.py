"""The editor contract as tests: subclass :class:`EditorConformance` in your plugin's tests.

```python
from kme.conformance import EditorConformance

class TestMyEditor(EditorConformance):
    editor_name = "my-editor"
    params = {"layer": 1}
```

pytest then runs every check below against your editor on tiny random models of each
supported architecture (no download): strict params, declared capabilities, a real handle,
bit-for-bit undo (of the weights and of the outputs), patch round trip, finite weights, batch
and sequential use as declared, and (``expects_top1 = True``) that the edited prompt's new
object becomes the top prediction.

A trained editor (``capabilities.needs_training``) sets ``train_params``: params for a tiny,
short training run (small step counts). The kit then trains a checkpoint per tiny family
(``Editor.train`` on :meth:`EditorConformance.train_requests`), runs every check with the
checkpoint of the model's own family, and checks that the checkpoint names its editor and
base model (``manifest.json``) and is refused (ConfigError) on another base model::

    class TestMyTrainedEditor(EditorConformance):
        editor_name = "my-trained-editor"
        train_params = {"steps": 5}
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from kme.components import Capabilities, Editor
from kme.data import EditRequest, Probe
from kme.errors import ConfigError, KmeError
from kme.testing import TINY_FAMILIES, tiny_model
from kme.trained import read_trained_manifest

__all__ = ["EditorConformance", "default_requests", "default_train_requests"]


def default_requests() -> list[EditRequest]:
    return [
        EditRequest(case_id=0, prompt="The capital of {} is", subject="France", target_new="Rome", target_true="Paris"),
        EditRequest(case_id=1, prompt="{} was born in", subject="Alice Smith", target_new="Paris",
                    target_true="London"),
        EditRequest(case_id=2, prompt="{} speaks", subject="Bob Jones", target_new="Italian", target_true="French"),
    ]


def default_train_requests() -> list[EditRequest]:
    """A dozen training requests (six people, two relations) with a paraphrase and a
    neighbourhood prompt each: what the kit trains a trained editor's tiny checkpoints on.
    Their subjects are not those of :func:`default_requests`."""
    people = ["Carol White", "Dan Black", "Eve Stone", "Finn Gray", "Gina Moss", "Hugo Park"]
    out = []
    for i, s in enumerate(people):
        other = people[(i + 1) % len(people)]
        out.append(EditRequest(case_id=f"born:{s}", prompt="{} was born in", subject=s, target_new="Paris",
                               target_true="London", relation="born", paraphrase_prompts=[f"The birthplace of {s} is"],
                               neighborhood=[Probe(prompt=f"{other} was born in", target="London")]))
        out.append(EditRequest(case_id=f"speaks:{s}", prompt="{} speaks", subject=s, target_new="French",
                               target_true="Italian", relation="speaks", paraphrase_prompts=[f"The language of {s} is"],
                               neighborhood=[Probe(prompt=f"{other} speaks", target="Italian")]))
    return out


class EditorConformance:
    """Base class of an editor's conformance tests (not collected itself: no ``Test`` prefix)."""

    editor_name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    families: ClassVar[tuple[str, ...]] = TINY_FAMILIES
    plugins: ClassVar[list[Any]] = []  # extra plugin objects to register (besides entry points)
    expects_top1: ClassVar[bool] = False  # the edit makes target_new the top next token
    #: Trained editors: params of a tiny training run (small step counts), merged over
    #: ``params`` for ``Editor.train`` and for the edits that use its checkpoint. ``None``:
    #: the kit trains nothing (``params`` must then name a checkpoint, and the check of
    #: trained checkpoints is skipped).
    train_params: ClassVar[dict[str, Any] | None] = None

    # -- helpers ---------------------------------------------------------------------------
    def plugin_manager(self):  # type: ignore[no-untyped-def]
        """One plugin manager per test class (entry points plus ``plugins``)."""
        from kme.plugins import build_plugin_manager

        cls = type(self)
        if cls.__dict__.get("_pm") is None:
            cls._pm = build_plugin_manager(list(self.plugins))
        return cls._pm

    def requests(self) -> list[EditRequest]:
        return default_requests()

    def make_model(self, family: str):  # type: ignore[no-untyped-def]
        return tiny_model(family, self.plugin_manager())

    def editor_class(self) -> type[Editor]:
        assert self.editor_name, "set editor_name on your conformance test class"
        return self.plugin_manager().editors.get(self.editor_name)

    def editor(self) -> Editor:
        return self.editor_class()(self.params)

    def train_requests(self) -> list[EditRequest]:
        """What the kit's tiny checkpoints are trained on (override for an editor that needs
        other training data)."""
        return default_train_requests()

    def trains_in_kit(self) -> bool:
        """Whether the kit trains this editor's checkpoints: it needs training, ``train_params``
        is set, and ``params`` name no checkpoint of their own."""
        cls = self.editor_class()
        return (cls.capabilities.needs_training and self.train_params is not None
                and not cls(self.params).is_trained())

    def trained(self, family: str) -> tuple[Path, dict[str, Any]]:
        """The checkpoint folder trained (once per test class and family) on a tiny model of
        ``family`` with ``train_params``, and the params that use it (``params``,
        ``train_params`` and what ``Editor.train`` returned)."""
        cls = type(self)
        cache = cls.__dict__.get("_trained_cache")
        if cache is None:
            cache = {}
            cls._trained_cache = cache
        if family not in cache:
            out = Path(tempfile.mkdtemp(prefix=f"kme-conformance-{self.editor_name}-{family}-"))
            atexit.register(shutil.rmtree, out, True)
            params = {**self.params, **(self.train_params or {})}
            updates = self.editor_class()(params).train(self.make_model(family), self.train_requests(), str(out))
            cache[family] = (out, {**params, **(updates or {})})
        return cache[family]

    def editor_for(self, family: str) -> Editor:
        """The editor for a model of ``family``: with the kit's checkpoint of that family when
        the kit trains it (:meth:`trains_in_kit`), else :meth:`editor`."""
        if self.trains_in_kit():
            return self.editor_class()(self.trained(family)[1])
        return self.editor()

    @staticmethod
    def _state(m: Any) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in m.model.state_dict().items()}

    def probe_prompts(self) -> list[str]:
        """Prompts whose outputs must be the same before an edit and after its undo: the
        requests' prompts and one the edits do not name."""
        return [r.text for r in self.requests()] + ["The Eiffel Tower is located in"]

    @staticmethod
    @torch.no_grad()
    def _outputs(m: Any, prompts: list[str]) -> tuple[list[torch.Tensor], torch.Tensor, bool]:
        """The raw network's logits on each prompt (one unpadded pass each, so a hook or module
        left behind shows), the kernel's next-token log-probabilities (memory included), and
        the train/eval mode."""
        raw = []
        for p in prompts:
            ids = torch.tensor([m.tokenizer(p, add_special_tokens=True)["input_ids"]], device=m.device)
            raw.append(m.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.detach().cpu())
        return raw, m.next_token_logprobs(prompts).detach().cpu(), m.model.training

    # -- the contract ----------------------------------------------------------------------
    def test_declares_name_description_params_capabilities(self) -> None:
        cls = self.editor_class()
        assert cls.name == self.editor_name
        assert cls.description, "describe the editor in one line"
        assert cls.Params.model_config.get("extra") == "forbid", "Params must forbid unknown fields"
        assert isinstance(cls.capabilities, Capabilities)

    def test_unknown_params_are_refused(self) -> None:
        with pytest.raises(KmeError, match="unknown field"):
            self.editor_class()({**self.params, "no_such_param_xyz": 1})

    @pytest.mark.parametrize("family", TINY_FAMILIES)
    def test_edit_then_undo_is_bitwise(self, family: str) -> None:
        if family not in self.families:
            pytest.skip(f"{self.editor_name} does not claim {family}")
        m = self.make_model(family)
        before = self._state(m)
        prompts = self.probe_prompts()
        out_before = self._outputs(m, prompts)
        req = self.requests()[:1]
        h = m.edit(self.editor_for(family), req)
        assert h in m.stack and h.editor_name == self.editor_name
        assert h.deltas or h.memory or h.state or h._undo_callbacks, "the edit recorded nothing"
        for name in h.deltas:
            assert torch.isfinite(m.parameter(name)).all()
        if self.expects_top1:
            lp = m.next_token_logprobs([req[0].text])[0]
            assert int(lp.argmax()) == m.target_ids(req[0].text, req[0].target_new)[0], \
                f"{family}: the new object is not the top prediction after the edit"
        m.undo()
        after = self._state(m)
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert m.memory_contexts([req[0].text]) == [""]
        # the outputs, not only the weights: a forward hook, an added module or a router left
        # behind changes them while the state dict is restored
        raw_b, next_b, mode_b = out_before
        raw_a, next_a, mode_a = self._outputs(m, prompts)
        assert mode_a == mode_b, f"{family}: the edit left the model in {'train' if mode_a else 'eval'} mode"
        for p, a, b in zip(prompts, raw_a, raw_b):
            assert torch.equal(a, b), \
                f"{family}: the logits on {p!r} differ after undo (max |Δ| {float((a - b).abs().max()):.3g})"
        assert torch.equal(next_a, next_b), f"{family}: next-token log-probabilities differ after undo"

    def test_patch_round_trip(self, tmp_path: Any) -> None:
        family = self.families[0]
        a = self.make_model(family)
        a.edit(self.editor_for(family), self.requests()[:1])
        a.save_patch(str(tmp_path / "patch"))
        b = self.make_model(family)
        b.load_patch(str(tmp_path / "patch"))
        sa, sb = self._state(a), self._state(b)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        prompts = [r.text for r in self.requests()]
        assert a.memory_contexts(prompts) == b.memory_contexts(prompts)
        ta = a.next_token_logprobs(prompts)
        tb = b.next_token_logprobs(prompts)
        assert torch.allclose(ta, tb, atol=1e-5)

    def test_batch_and_sequential_as_declared(self) -> None:
        cls = self.editor_class()
        family = self.families[0]
        m = self.make_model(family)
        reqs = self.requests()
        if cls.capabilities.batch:
            m.edit(self.editor_for(family), reqs)
        else:
            with pytest.raises(KmeError, match="one request at a time"):
                m.edit(self.editor_for(family), reqs)
        m.undo()
        if cls.capabilities.sequential:
            for r in reqs:
                m.edit(self.editor_for(family), [r])
            assert len(m.stack) == len(reqs)
            m.undo()
        assert m.stack == []

    def test_trained_checkpoint_is_refused_on_another_base(self) -> None:
        """A trained editor's checkpoint names its editor and base model, works on that base,
        and is refused (ConfigError, nothing applied) on another base model: one of the same
        architecture with other weights and, where the editor claims several, one of another
        architecture."""
        cls = self.editor_class()
        if not cls.capabilities.needs_training:
            pytest.skip(f"{self.editor_name} has no trained parts")
        if not self.trains_in_kit():
            pytest.skip("set train_params (small step counts) so that the kit trains a tiny checkpoint")
        family = self.families[0]
        out, params = self.trained(family)
        same = self.make_model(family)
        manifest = read_trained_manifest(out)
        assert manifest.get("editor") == self.editor_name, \
            f"{out}/manifest.json names editor {manifest.get('editor')!r}"
        assert manifest.get("base_fingerprint") == same.base_fingerprint, \
            f"{out}/manifest.json does not name the base model it was trained on"
        same.edit(cls(params), self.requests()[:1])  # the base it was trained on accepts it
        same.undo()
        others = [tiny_model(family, self.plugin_manager(), seed=1)]
        others += [self.make_model(f) for f in self.families if f != family][:1]
        for other in others:
            assert other.base_fingerprint != same.base_fingerprint
            with pytest.raises(ConfigError):
                editor = cls(params)
                editor.check_model(other)
                other.edit(editor, self.requests()[:1])
            assert other.stack == [], f"{other.source}: an edit was applied with another base's checkpoint"
