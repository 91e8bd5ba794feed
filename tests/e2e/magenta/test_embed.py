"""`POST /embed/text` and `/embed/audio` end to end (the Magenta RT API's contract): MusicCoCa's style
embedding from a real Magenta worker (random:tiny, whose MusicCoCa is magenta-rt's mock)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.support.audio_files import encode, synth

pytestmark = pytest.mark.e2e


def test_text_embedding_is_768_floats_and_depends_on_the_text(client: httpx.Client) -> None:
    first = client.post("/embed/text", data={"text": "funky jazz"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["shape"] == [768] and len(body["embedding"]) == 768 and body["random_weights"] is True
    assert all(isinstance(value, float) for value in body["embedding"])
    assert np.isfinite(body["embedding"]).all() and np.linalg.norm(body["embedding"]) > 0
    again = client.post("/embed/text", files={"text": (None, "funky jazz")}).json()  # multipart too
    np.testing.assert_allclose(again["embedding"], body["embedding"], rtol=1e-6)
    other = client.post("/embed/text", data={"text": "dark ambient"}).json()
    assert not np.allclose(other["embedding"], body["embedding"])


def test_audio_embedding_is_768_floats(client: httpx.Client) -> None:
    audio = encode("flac", synth(44_100, 2, 3.0), 44_100)
    response = client.post("/embed/audio", files={"audio_file": ("clip.flac", audio)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["shape"] == [768] and len(body["embedding"]) == 768
    job = client.get(f"/jobs/{response.headers['x-job-id']}").json()
    assert (
        job["kind"] == "embed"
        and job["status"] == "completed"
        and job["result"]["files"] == []
        and len(job["result"]["embedding"]) == 768
    )


def test_bad_embed_requests_are_refused_before_any_job(client: httpx.Client) -> None:
    before = client.get("/jobs", params={"limit": 1}).json()["total"]
    for path, kwargs, code in (
        ("/embed/text", {"data": {}}, "validation_error"),
        ("/embed/text", {"data": {"text": "   "}}, "validation_error"),
        ("/embed/audio", {"data": {"model": "random:tiny"}}, "validation_error"),
        ("/embed/audio", {"files": {"audio_file": ("x.wav", b"not audio" * 50)}}, "audio_undecodable"),
        ("/embed/audio", {"files": {"audio_file": ("x.wav", b"")}}, "audio_empty"),
        ("/embed/text", {"data": {"text": "x", "model": "mrt9"}}, "unknown_model"),
    ):
        response = client.post(path, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["code"] == code
    assert client.get("/jobs", params={"limit": 1}).json()["total"] == before
