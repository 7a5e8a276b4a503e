import shutil

import pytest
import torch

from kme.testing import tiny_model
from kme_editlib import stats as S
from kme_editlib.corpus import Corpus
from kme_editlib.hooks import HookSet, module_at


@pytest.fixture()
def corpus_file(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text("\n".join(f"The capital of France is Paris {i}. Bob Jones speaks French." for i in range(23)))
    return f"file:{p}"


def _direct(model, texts, layer):
    ks = []
    for t in texts:
        ids = model.tokenizer(t, return_tensors="pt")["input_ids"]
        with HookSet() as hs, torch.no_grad():
            hs.on_input(module_at(model, layer, "mlp_out"), lambda x: ks.append(x[0].double()))
            model.model(input_ids=ids)
    k = torch.cat(ks)
    return (k.T @ k / len(k)).float()


def test_second_moment_matches_a_direct_computation_and_is_cached(tmp_path, corpus_file):
    m = tiny_model("gpt2")
    texts = open(corpus_file[5:]).read().splitlines()[:10]
    got = S.key_second_moments(m, [1, 2], corpus=corpus_file, samples=10, cache_dir=tmp_path / "c",
                               batch_size=4, progress=False)
    assert torch.allclose(got[1], _direct(m, texts, 1), atol=1e-5)
    assert torch.allclose(got[2], _direct(m, texts, 2), atol=1e-5)
    files = list((tmp_path / "c" / m.base_fingerprint).rglob("*.safetensors"))
    assert len(files) == 2 and all(".n10." in f.name for f in files)
    again = S.key_second_moments(m, [1], corpus=corpus_file, samples=10, cache_dir=tmp_path / "c", progress=False)
    assert torch.equal(again[1], got[1])


def test_interrupted_computation_resumes(tmp_path, corpus_file, monkeypatch):
    m = tiny_model("gpt2")
    full = S.key_second_moments(m, [0], corpus=corpus_file, samples=20, cache_dir=tmp_path / "ref",
                                batch_size=4, progress=False)[0]
    real = S.resolve_corpus

    class Stop(Exception):
        pass

    def interrupted(spec, model):  # the same corpus, but the process dies after 13 records
        src = real(spec, model)

        def records():
            for i, t in enumerate(src.records()):
                if i == 13:
                    raise Stop
                yield t

        return Corpus(id=src.id, records=records, size=src.count(10**9))

    monkeypatch.setattr(S, "resolve_corpus", interrupted)
    with pytest.raises(Stop):
        S.key_second_moments(m, [0], corpus=corpus_file, samples=20, cache_dir=tmp_path / "c", batch_size=4,
                             checkpoint_every=8, progress=False)
    monkeypatch.undo()
    partial = list((tmp_path / "c").rglob("*.partial.safetensors"))
    assert len(partial) == 1
    resumed = S.key_second_moments(m, [0], corpus=corpus_file, samples=20, cache_dir=tmp_path / "c",
                                   batch_size=4, progress=False)[0]
    assert torch.allclose(resumed, full, atol=1e-6)
    assert not list((tmp_path / "c").rglob("*.partial.safetensors"))


def test_statistics_of_another_model_are_refused(tmp_path, corpus_file):
    a, b = tiny_model("gpt2", seed=0), tiny_model("gpt2", seed=1)
    S.key_second_moments(a, [0], corpus=corpus_file, samples=5, cache_dir=tmp_path, progress=False)
    src = tmp_path / a.base_fingerprint
    shutil.copytree(src, tmp_path / b.base_fingerprint)  # a stale or copied cache
    with pytest.raises(S.StatsMismatchError, match="computed for model fingerprint"):
        S.key_second_moments(b, [0], corpus=corpus_file, samples=5, cache_dir=tmp_path, progress=False)


def test_bad_corpus_and_sample_count_are_clear_errors(tmp_path):
    m = tiny_model("gpt2")
    from kme.errors import KmeError

    with pytest.raises(KmeError, match="does not exist"):
        S.key_second_moments(m, [0], corpus="file:/no/such/file.txt", samples=5, cache_dir=tmp_path)
    with pytest.raises(KmeError, match="unknown statistics corpus"):
        S.key_second_moments(m, [0], corpus="wikipedia", samples=5, cache_dir=tmp_path)
    with pytest.raises(KmeError, match="layer 7 does not exist"):
        S.key_second_moments(m, [7], corpus="factworld", samples=5, cache_dir=tmp_path)


def test_loaded_statistics_are_kept_between_edits(monkeypatch, tmp_path, corpus_file):
    """The second request for cached statistics returns the tensor kept in memory (no file
    read); a tensor modified in place, or a budget of 0, reads the file again."""
    m = tiny_model("gpt2")
    S.clear_kept()

    def get():
        return S.key_second_moments(m, [0], corpus=corpus_file, samples=8, cache_dir=tmp_path / "c",
                                    progress=False)[0]

    first = get().clone()
    reads = []
    real = S.load_stats
    monkeypatch.setattr(S, "load_stats", lambda *a, **k: reads.append(1) or real(*a, **k))
    a, b = get(), get()
    assert len(reads) == 1 and a is b and torch.equal(a, first)
    b.mul_(2)  # a caller that changed it in place does not hand the change to the next one
    assert torch.equal(get(), first) and len(reads) == 2
    monkeypatch.setenv(S.ENV_STATS_MEMORY, "0")
    S.clear_kept()
    get(), get()
    assert len(reads) == 4
