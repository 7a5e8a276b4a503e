"""The ``causal-tracing`` locator: trace the batch's facts, rank layers, write heat maps."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

import kme

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest, Location

__all__ = ["CausalTracingLocator", "CausalTracingParams"]

Kind = Literal["hidden", "mlp", "attn"]


class CausalTracingParams(kme.Params):
    samples: int = Field(10, ge=1, description="noise draws per corrupted run")
    noise_factor: float = Field(3.0, gt=0, description="noise std as a multiple of the embedding std")
    noise_std: float | None = Field(None, gt=0, description="absolute noise std (overrides noise_factor)")
    window: int | None = Field(None, ge=1, description="layers restored together for mlp/attn "
                               "(default: 10 for 48 layers, scaled: max(1, round(10·n/48)))")
    kinds: list[Kind] = Field(default_factory=lambda: ["hidden", "mlp", "attn"], min_length=1)
    rank_by: Kind = Field("mlp", description="which kind's effect ranks the layers")
    rank_token: Literal["subject_last", "last"] = Field("subject_last", description="at which token layers are ranked")
    target: Literal["true", "prediction"] = Field("true", description="trace target_true (if given) or the prediction")
    max_requests: int | None = Field(32, ge=1, description="trace at most this many requests of a batch")
    output_dir: str | None = Field(None, description="write <case_id>.json and .png heat maps here")
    plot: bool = Field(True, description="write PNG heat maps (with output_dir)")
    corrupt: Literal["subject", "verb", "object"] = Field(
        "subject", description="span whose embeddings are corrupted (verb/object: each request's meta['verb'] / "
        "meta['object'], for commonsense statements); subject_last then means that span's last token")
    seed: int = 0


class CausalTracingLocator(kme.Locator):
    name = "causal-tracing"
    description = "corrupt the subject, restore hidden/MLP/attention states; rank layers by indirect effect (ROME §2)"
    Params = CausalTracingParams

    def locate(self, model: "EditedModel", requests: list["EditRequest"]) -> "Location":
        import torch

        from kme_causal_tracing.plot import plot_trace
        from kme_causal_tracing.trace import embedding_std, trace_request

        p: CausalTracingParams = self.params  # type: ignore[assignment]
        if p.rank_by not in p.kinds:
            raise kme.KmeError(f"rank_by {p.rank_by!r} is not among the traced kinds {p.kinds}",
                               where="locator 'causal-tracing' params", hint="add it to kinds")
        n = model.num_layers
        window = p.window or max(1, round(10 * n / 48))
        std = p.noise_std or p.noise_factor * embedding_std(model)
        chosen = requests[: p.max_requests] if p.max_requests else requests
        if p.corrupt != "subject":
            from kme_editlib.spans import anchor_request

            chosen = [anchor_request(r, p.corrupt) for r in chosen]
        traces = [trace_request(model, r, noise_std=std, samples=p.samples, window=window, kinds=tuple(p.kinds),
                                target=p.target, seed=p.seed) for r in chosen]
        artifacts: list[str] = []
        if p.output_dir:
            out = Path(p.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            for t in traces:
                stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(t.case_id))[:80] or "trace"
                (out / f"{stem}.json").write_text(json.dumps(t.to_json(), indent=1))
                artifacts.append(str(out / f"{stem}.json"))
                if p.plot:
                    artifacts.append(str(plot_trace(t, out / f"{stem}.png")))
        summary: dict[str, dict[str, list[float]]] = {}
        for kind in p.kinds:
            at_subject = torch.tensor([t.effects[kind][t.subject_range[1]] for t in traces]).mean(0)
            at_last = torch.tensor([t.effects[kind][-1] for t in traces]).mean(0)
            summary[kind] = {"subject_last": at_subject.tolist(), "last": at_last.tolist()}
        ranking = torch.tensor(summary[p.rank_by][p.rank_token])
        layers = [int(i) for i in torch.argsort(ranking, descending=True, stable=True)]
        scores = {
            "mean_indirect_effect": summary, "ranked_by": f"{p.rank_by} at {p.rank_token}",
            "noise_std": std, "window": window, "traced": len(traces), "corrupted": p.corrupt,
            "p_clean_mean": sum(t.p_clean for t in traces) / len(traces),
            "p_corrupted_mean": sum(t.p_corrupted for t in traces) / len(traces),
        }
        if p.output_dir:
            (Path(p.output_dir) / "summary.json").write_text(json.dumps({**scores, "layers": layers}, indent=1))
            artifacts.append(str(Path(p.output_dir) / "summary.json"))
        return kme.Location(locator=self.name, layers=layers, modules=[model.layout.name(layers[0], "mlp_out")],
                            scores=scores, artifacts=artifacts)
