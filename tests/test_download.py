"""Downloads against a real HTTP server on 127.0.0.1 that drops, fails, redirects and lies.

After every failure the target folder must hold nothing the WebUI would list (A1111 globs
`**/*.ckpt`, `**/*.pt`, `**/*.safetensors`); refusals must leave nothing at all.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from download_kit import NO_TOKENS, get, listed, private_hash_cache, server, sha  # noqa: F401 (fixtures)
from vae_lab.download.transfer import (
    DownloadCancelled,
    DownloadError,
    DownloadInterrupted,
    NoNetwork,
    check_filename,
    download,
    filename_from_content_disposition,
    partial_paths,
)
from vae_lab.download.tokens import TokenPolicy

ROOT = Path(__file__).resolve().parent.parent
NAME = "tiny-vae.safetensors"
# "localhost" plays Hugging Face; 127.0.0.1 (same server) plays any other host, e.g. its CDN.
TEST_TOKENS = TokenPolicy(
    tokens={"hf": "hf_SECRET", "civitai": "civ_SECRET"},
    hosts={"hf": ("localhost",), "civitai": ("civitai.invalid",)},
    require_https=False,
)


@pytest.fixture(scope="module")
def vae_bytes() -> bytes:
    """A real (tiny, random-weight) kl-f8 VAE in the LDM layout, as safetensors bytes."""
    from safetensors.torch import save

    from testkit.factories import TINY_KL, random_kl_state_dict

    return save(random_kl_state_dict(TINY_KL, seed=3))


@pytest.fixture(scope="module")
def ckpt_bytes() -> bytes:
    import torch

    from testkit.factories import TINY_KL, random_kl_state_dict

    buf = io.BytesIO()
    torch.save({"state_dict": random_kl_state_dict(TINY_KL, seed=4)}, buf)
    return buf.getvalue()




# ----------------------------------------------------------------------------- happy paths


def test_plain_download_is_verified_and_leaves_only_the_file(server, tmp_path, vae_bytes):
    server.add_file("/f/" + NAME, vae_bytes)
    seen = []
    done = []
    res = get(server.url("/f/" + NAME), tmp_path, sha256=sha(vae_bytes),
              progress=lambda d, t: seen.append((d, t)), on_done=done.append)
    assert Path(res.path).read_bytes() == vae_bytes
    assert res.sha256 == sha(vae_bytes) and res.verified and res.expected_from == "argument"
    assert res.size == len(vae_bytes) and not res.already_present and res.resumed_from == 0
    assert os.listdir(tmp_path) == [NAME]  # no partial, lock or meta file left
    assert seen[-1] == (len(vae_bytes), len(vae_bytes))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert done == [res]
    assert server.requests_for("/f/" + NAME)[0].range is None


def test_unverified_download_still_reports_the_hash(server, tmp_path, ckpt_bytes):
    server.add_file("/vae.ckpt", ckpt_bytes)
    res = get(server.url("/vae.ckpt"), tmp_path)
    assert res.sha256 == sha(ckpt_bytes) and not res.verified and res.expected_from is None
    assert listed(tmp_path) == ["vae.ckpt"]


def test_dropped_connection_resumes_with_a_range_request(server, tmp_path, vae_bytes):
    server.add_file("/" + NAME, vae_bytes)
    server.script("/" + NAME, {"drop_at": 0.4})
    res = get(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes))
    reqs = server.requests_for("/" + NAME)
    assert len(reqs) == 2
    assert reqs[0].range is None
    assert reqs[1].range_start == int(len(vae_bytes) * 0.4)  # resumed, not restarted
    assert reqs[1].if_range == server.files["/" + NAME].etag and reqs[1].status == 206
    assert Path(res.path).read_bytes() == vae_bytes and res.attempts == 2
    assert os.listdir(tmp_path) == [NAME]


def test_a_drop_before_the_first_byte_is_retried(server, tmp_path, vae_bytes):
    server.add_file("/" + NAME, vae_bytes)
    server.script("/" + NAME, {"drop_at": 0.0})
    res = get(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes))
    assert res.attempts == 2 and Path(res.path).read_bytes() == vae_bytes


def test_server_without_range_support_restarts_cleanly(server, tmp_path, vae_bytes):
    server.add_file("/" + NAME, vae_bytes)
    server.script("/" + NAME, {"drop_at": 0.5}, {"ignore_range": True})
    res = get(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes))
    assert server.requests_for("/" + NAME)[1].status == 200
    assert res.sha256 == sha(vae_bytes) and Path(res.path).read_bytes() == vae_bytes


def test_500_then_200_is_retried(server, tmp_path, vae_bytes):
    server.add_file("/" + NAME, vae_bytes)
    server.script("/" + NAME, {"status": 500}, {"status": 503, "headers": {"Retry-After": "0"}})
    res = get(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes))
    assert [r.status for r in server.requests_for("/" + NAME)] == [500, 503, 200]
    assert res.attempts == 3 and listed(tmp_path) == [NAME]


def test_persistent_5xx_gives_up_after_the_retries(server, tmp_path, vae_bytes):
    server.add_file("/" + NAME, vae_bytes)
    server.script("/" + NAME, *[{"status": 502}] * 4)
    with pytest.raises(DownloadInterrupted, match="failed after 2 retries.*HTTP 502"):
        get(server.url("/" + NAME), tmp_path, retries=2)
    assert len(server.requests_for("/" + NAME)) == 3
    assert listed(tmp_path) == []


def test_redirect_chain_is_followed(server, tmp_path, vae_bytes):
    server.add_file("/blobs/abc", vae_bytes)
    server.script("/r1/" + NAME, {"redirect": "/r2"})
    server.script("/r2", {"redirect": "/r3", "status": 307})
    server.script("/r3", {"redirect": "/blobs/abc", "status": 301})
    res = get(server.url("/r1/" + NAME), tmp_path, sha256=sha(vae_bytes))
    assert res.filename == NAME  # the name comes from the URL asked for, not the CDN's
    assert listed(tmp_path) == [NAME] and len(server.log) == 4


def test_content_disposition_names_a_civitai_style_download(server, tmp_path, vae_bytes):
    server.add_file("/api/download/models/123", vae_bytes,
                    headers={"Content-Disposition": "attachment; filename*=UTF-8''clear%20vae.safetensors"})
    res = get(server.url("/api/download/models/123"), tmp_path)
    assert res.filename == "clear vae.safetensors" and listed(tmp_path) == ["clear vae.safetensors"]


# ----------------------------------------------------------------------------- interruptions


def test_cancel_keeps_a_hidden_partial_and_the_next_call_resumes(server, tmp_path, vae_bytes):
    server.add_file("/" + NAME, vae_bytes, rate=8e6)
    stop = threading.Event()

    def progress(done, total):
        if done > len(vae_bytes) * 0.3:
            stop.set()

    with pytest.raises(DownloadCancelled):
        get(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes), progress=progress, cancel=stop)
    part, meta, lock = partial_paths(tmp_path, NAME)
    kept = part.stat().st_size
    assert 0 < kept < len(vae_bytes)
    assert listed(tmp_path) == [] and tmp_path not in lock.parents  # the lock is never in the VAE folder

    server.files["/" + NAME].rate = None
    res = get(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes))
    assert server.requests_for("/" + NAME)[-1].range_start == kept
    assert res.resumed_from == kept and Path(res.path).read_bytes() == vae_bytes
    assert os.listdir(tmp_path) == [NAME]


def test_a_civitai_style_download_resumes_under_its_content_disposition_name(server, tmp_path, vae_bytes):
    """No name in the URL: the partial is found only after the first response names the file."""
    cd = {"Content-Disposition": 'attachment; filename="named.safetensors"'}
    server.add_file("/api/download/models/9", vae_bytes, rate=8e6, headers=cd)
    stop = threading.Event()
    with pytest.raises(DownloadCancelled):
        get(server.url("/api/download/models/9"), tmp_path, cancel=stop,
            progress=lambda d, t: d > len(vae_bytes) * 0.3 and stop.set())
    kept = partial_paths(tmp_path, "named.safetensors")[0].stat().st_size
    server.files["/api/download/models/9"].rate = None
    res = get(server.url("/api/download/models/9"), tmp_path, sha256=sha(vae_bytes))
    last = server.requests_for("/api/download/models/9")[-1]
    assert last.range_start == kept and last.status == 206 and res.resumed_from == kept
    assert os.listdir(tmp_path) == ["named.safetensors"] and Path(res.path).read_bytes() == vae_bytes


def test_killed_process_is_resumed_by_a_new_one(server, tmp_path, vae_bytes):
    """A real restart: the CLI in a subprocess is SIGKILLed mid-download, then we resume."""
    server.add_file("/" + NAME, vae_bytes, rate=4e6)
    part, _, _ = partial_paths(tmp_path, NAME)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HF_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vae_lab", "download", server.url("/" + NAME), "--dir", str(tmp_path),
         "--sha256", sha(vae_bytes), "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if part.exists() and part.stat().st_size > len(vae_bytes) * 0.3:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the subprocess never got going")
    finally:
        proc.kill()
        proc.wait()
    kept = part.stat().st_size
    assert 0 < kept < len(vae_bytes) and listed(tmp_path) == []

    server.files["/" + NAME].rate = None
    res = get(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes))
    last = server.requests_for("/" + NAME)[-1]
    assert last.range_start == kept and last.status == 206
    assert res.resumed_from == kept and Path(res.path).read_bytes() == vae_bytes
    assert os.listdir(tmp_path) == [NAME]


def test_two_concurrent_downloads_of_one_file(server, tmp_path, vae_bytes):
    server.add_file("/" + NAME, vae_bytes, rate=20e6)
    results, errors = [], []

    def one():
        try:
            results.append(get(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes)))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(r.already_present for r in results) == [False, True]  # the second waited, then found it
    assert len(server.requests_for("/" + NAME)) == 1  # one transfer, not two interleaved
    assert Path(tmp_path / NAME).read_bytes() == vae_bytes and os.listdir(tmp_path) == [NAME]


def test_a_busy_lock_can_fail_fast(server, tmp_path, vae_bytes):
    server.add_file("/" + NAME, vae_bytes, rate=10e6)
    started = threading.Event()
    first = threading.Thread(target=lambda: get(server.url("/" + NAME), tmp_path,
                                                progress=lambda d, t: started.set()))
    first.start()
    assert started.wait(10)
    with pytest.raises(DownloadError, match="still running"):
        get(server.url("/" + NAME), tmp_path, lock_wait=0.2)
    first.join(30)
    assert listed(tmp_path) == [NAME] and Path(tmp_path / NAME).read_bytes() == vae_bytes


# ----------------------------------------------------------------------------- refusals


def assert_nothing_left(folder: Path):
    assert os.listdir(folder) == []


def test_404(server, tmp_path):
    with pytest.raises(DownloadError, match=r"not found \(HTTP 404\)"):
        get(server.url("/missing.safetensors"), tmp_path)
    assert_nothing_left(tmp_path)


def test_401_says_a_token_is_needed_and_where(server, tmp_path):
    server.script("/gated.safetensors", {"status": 401})
    policy = TokenPolicy(tokens={}, hosts={"hf": ("localhost",)}, require_https=False)
    with pytest.raises(DownloadError, match="HTTP 401.*needs an access token.*HF_TOKEN"):
        get(server.url("/gated.safetensors", host="localhost"), tmp_path, tokens=policy)
    assert_nothing_left(tmp_path)


def test_403_with_a_token_says_the_token_was_refused(server, tmp_path):
    server.script("/gated.safetensors", {"status": 403})
    with pytest.raises(DownloadError, match="HTTP 403.*token was refused") as err:
        get(server.url("/gated.safetensors", host="localhost"), tmp_path, tokens=TEST_TOKENS)
    assert "hf_SECRET" not in str(err.value)
    assert server.log[0].authorization == "Bearer hf_SECRET"
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize(
    "body, content_type, message",
    [
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html", "web page"),
        (b"<html><body>Oops</body></html>", "application/octet-stream", "web page"),  # lying header
        (b'{"error":"Unauthorized"}', "application/json", "JSON"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n", "text/plain", "LFS pointer"),
        (b"\x00" * 4096, "application/octet-stream", "not a safetensors"),
        (b"\x01\x02\x03", "application/octet-stream", "not a safetensors"),  # too short to be one
        (b"", "application/octet-stream", "empty file"),
    ],
)
def test_non_weights_responses_are_refused(server, tmp_path, body, content_type, message):
    server.script("/x/" + NAME, {"body": body, "content_type": content_type})
    with pytest.raises(DownloadError, match=message):
        get(server.url("/x/" + NAME), tmp_path)
    assert_nothing_left(tmp_path)


def test_wrong_checksum_is_refused_and_deleted(server, tmp_path, vae_bytes):
    server.add_file("/" + NAME, vae_bytes)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        get(server.url("/" + NAME), tmp_path, sha256="ab" * 32)
    assert_nothing_left(tmp_path)


def test_a_file_larger_than_expected_is_refused(server, tmp_path, vae_bytes):
    server.add_file("/" + NAME, vae_bytes)
    with pytest.raises(DownloadError, match="announces .* bytes but"):
        get(server.url("/" + NAME), tmp_path, size=len(vae_bytes) - 10)
    assert_nothing_left(tmp_path)


def test_a_stream_of_unannounced_size_is_cut_off_at_the_limit(server, tmp_path, vae_bytes, monkeypatch):
    import vae_lab.download.transfer as dl

    server.script("/" + NAME, {"body": vae_bytes, "content_type": "application/octet-stream", "no_length": True})
    monkeypatch.setattr(dl, "MAX_UNKNOWN_SIZE", 1_000_000)
    with pytest.raises(DownloadError, match="more than the expected 1,000,000 bytes"):
        get(server.url("/" + NAME), tmp_path)
    assert_nothing_left(tmp_path)
    # The same unannounced stream within the limit is fine (it ends when the connection closes).
    server.script("/" + NAME, {"body": vae_bytes, "content_type": "application/octet-stream", "no_length": True})
    monkeypatch.setattr(dl, "MAX_UNKNOWN_SIZE", 8 << 30)
    res = get(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes))
    assert res.size == len(vae_bytes)


@pytest.mark.parametrize(
    "disposition",
    [
        'attachment; filename="../../evil.safetensors"',
        "attachment; filename*=UTF-8''..%2F..%2Fevil.safetensors",
        'attachment; filename="..\\\\evil.safetensors"',
        'attachment; filename="/etc/evil.safetensors"',
        'attachment; filename="payload.exe"',
        'attachment; filename=".hidden.safetensors"',
    ],
)
def test_unsafe_names_from_content_disposition_are_refused(server, tmp_path, vae_bytes, disposition):
    dest = tmp_path / "VAE"
    server.add_file("/api/download/models/1", vae_bytes, headers={"Content-Disposition": disposition})
    with pytest.raises(DownloadError, match="refusing the file name"):
        get(server.url("/api/download/models/1"), dest)
    assert os.listdir(dest) == [] and sorted(os.listdir(tmp_path)) == ["VAE"]


def test_a_url_without_a_file_name_needs_one(server, tmp_path, vae_bytes):
    server.add_file("/api/download/models/7", vae_bytes)
    with pytest.raises(DownloadError, match="refusing the file name '7'"):
        get(server.url("/api/download/models/7"), tmp_path)
    res = get(server.url("/api/download/models/7"), tmp_path, filename="seven.safetensors")
    assert listed(tmp_path) == ["seven.safetensors"] and res.sha256 == sha(vae_bytes)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x.safetensors", "file:///etc/passwd", "javascript:alert(1)",
                                 "http://[::1/x.pt", "http://127.0.0.1:99999/x.pt", "http://127.0.0.1:abc/x.pt"])
def test_non_http_urls_are_refused(tmp_path, url):
    with pytest.raises(DownloadError):
        get(url, tmp_path)
    assert_nothing_left(tmp_path)


def test_an_unreachable_server_is_named_with_the_cause(tmp_path):
    import socket

    with socket.socket() as s:  # a bound port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/{NAME}"
        with pytest.raises(NoNetwork, match=r"^cannot reach 127\.0\.0\.1: the connection was refused$"):
            get(url, tmp_path)  # not retried: nobody listens there
    assert os.listdir(tmp_path) == []  # nothing came, so nothing is left


def test_existing_file_with_the_same_hash_is_already_there(server, tmp_path, vae_bytes):
    (tmp_path / NAME).write_bytes(vae_bytes)
    server.add_file("/" + NAME, vae_bytes)
    res = get(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes))
    assert res.already_present and res.path == str(tmp_path / NAME)
    assert server.log == []  # known hash: nothing was downloaded


def test_existing_different_file_is_never_overwritten(server, tmp_path, vae_bytes):
    (tmp_path / NAME).write_bytes(b"mine")
    server.add_file("/" + NAME, vae_bytes)
    for kw in ({"sha256": sha(vae_bytes)}, {}):  # known hash: refused at once; unknown: after the transfer
        with pytest.raises(DownloadError, match="different file named"):
            get(server.url("/" + NAME), tmp_path, **kw)
        assert os.listdir(tmp_path) == [NAME] and (tmp_path / NAME).read_bytes() == b"mine"


def test_existing_same_file_found_after_an_unverified_transfer(server, tmp_path, vae_bytes):
    (tmp_path / NAME).write_bytes(vae_bytes)
    server.add_file("/" + NAME, vae_bytes)
    res = get(server.url("/" + NAME), tmp_path)
    assert res.already_present and os.listdir(tmp_path) == [NAME]


def test_hugging_face_linked_etag_finds_an_existing_file_without_the_body(server, tmp_path, vae_bytes):
    (tmp_path / NAME).write_bytes(vae_bytes)
    server.add_file("/" + NAME, vae_bytes, headers={"X-Linked-Etag": f'"{sha(vae_bytes)}"'})
    stall = threading.Event()
    server.script("/" + NAME, {"stall": stall})  # the body hangs: reading it would time out
    try:
        res = get(server.url("/" + NAME), tmp_path, timeout=(5, 3), retries=0)
    finally:
        stall.set()
    assert res.already_present and res.expected_from == "server" and res.sha256 == sha(vae_bytes)
    assert os.listdir(tmp_path) == [NAME]


def test_hugging_face_linked_etag_verifies_an_unpinned_download(server, tmp_path, vae_bytes):
    server.add_file("/good/" + NAME, vae_bytes, headers={"X-Linked-Etag": f'"{sha(vae_bytes)}"'})
    res = get(server.url("/good/" + NAME), tmp_path)
    assert res.verified and res.expected_from == "server"
    server.add_file("/bad/" + NAME, vae_bytes, headers={"X-Linked-Etag": f'"{"0" * 64}"'})
    with pytest.raises(DownloadError, match="checksum mismatch"):
        get(server.url("/bad/" + NAME), tmp_path / "other")
    assert listed(tmp_path / "other") == []


# ----------------------------------------------------------------------------- tokens


def test_token_goes_to_its_host_only_never_across_a_redirect(server, tmp_path, vae_bytes):
    server.add_file("/cdn/blob", vae_bytes)
    # "localhost" is the token host; it redirects to 127.0.0.1 (another host, like HF's CDN).
    server.script("/hf/" + NAME, {"redirect": "/cdn/blob", "host": "127.0.0.1"})
    get(server.url("/hf/" + NAME, host="localhost"), tmp_path, tokens=TEST_TOKENS)
    first, second = server.log
    assert first.host.startswith("localhost") and first.authorization == "Bearer hf_SECRET"
    assert second.host.startswith("127.0.0.1") and second.authorization is None


def test_no_token_to_a_foreign_host_nor_on_a_redirect_back(server, tmp_path, vae_bytes):
    server.add_file("/f/" + NAME, vae_bytes)
    server.script("/start/" + NAME, {"redirect": "/f/" + NAME, "host": "127.0.0.1"})
    get(server.url("/start/" + NAME), tmp_path, tokens=TEST_TOKENS)
    assert [r.authorization for r in server.log] == [None, None]


def test_token_policy_rules():
    policy = TokenPolicy(tokens={"hf": "hf_Q7", "civitai": "cv_Z9"})
    assert policy.token_for("https://huggingface.co/a/b/resolve/main/x.safetensors") == "hf_Q7"
    assert policy.header_for("https://hf.co/a/b/resolve/main/x.safetensors") == {"Authorization": "Bearer hf_Q7"}
    assert policy.token_for("https://civitai.com/api/download/models/1") == "cv_Z9"
    assert policy.token_for("https://huggingface.co/x").startswith("hf") and policy.service_for("https://civitai.com/") == "civitai"
    assert policy.token_for("http://huggingface.co/x") is None  # never in clear text
    assert policy.token_for("https://cdn-lfs.huggingface.co/repos/x") is None  # the CDN is another host
    assert policy.token_for("https://cas-bridge.xethub.hf.co/x") is None
    assert policy.token_for("https://huggingface.co.evil.com/x") is None
    assert policy.token_for("https://evil.com/huggingface.co") is None
    assert policy.token_for("https://user:pw@huggingface.co/x") is None
    assert "hf_Q7" not in repr(policy) and "cv_Z9" not in repr(policy) and "<set>" in repr(policy)


def test_tokens_from_settings_and_environment(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "from-env")
    monkeypatch.setenv("CIVITAI_API_TOKEN", "civ-env")
    assert TokenPolicy.from_settings().tokens == {"hf": "from-env", "civitai": "civ-env"}
    assert TokenPolicy.from_settings(hf="from-settings").tokens["hf"] == "from-settings"


# ----------------------------------------------------------------------------- helpers


def test_check_filename():
    assert check_filename("vae-ft-mse-840000-ema-pruned.safetensors")
    for ext in (".ckpt", ".pt", ".pth", ".bin", ".SAFETENSORS"):
        assert check_filename("a" + ext)
    for bad in ("", "..", "a/b.pt", "a\\b.pt", "C:evil.pt", ".x.pt", "x.pt.exe", "x.zip", "x\x00.pt", " x.pt",
                "NUL.safetensors", "com1.pt", "a" * 300 + ".pt", "x.pt "):
        with pytest.raises(DownloadError):
            check_filename(bad)


def test_content_disposition_parsing():
    assert filename_from_content_disposition('attachment; filename="a b.pt"') == "a b.pt"
    assert filename_from_content_disposition("attachment; filename=x.safetensors") == "x.safetensors"
    assert filename_from_content_disposition(
        "attachment; filename=\"fallback.pt\"; filename*=UTF-8''r%C3%A9el.pt") == "réel.pt"
    assert filename_from_content_disposition("inline") is None


# ----------------------------------------------------------------------------- resume corner cases


def test_a_complete_partial_from_a_killed_run_is_finished_without_refetching(server, tmp_path, vae_bytes):
    server.add_file("/" + NAME, vae_bytes)
    part, _, _ = partial_paths(tmp_path, NAME)
    part.write_bytes(vae_bytes)  # killed after the last byte, before the rename
    res = get(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes))
    assert server.requests_for("/" + NAME) == []  # its SHA-256 is the expected one: nothing to ask
    assert res.resumed_from == len(vae_bytes) and os.listdir(tmp_path) == [NAME]


def test_a_file_changed_on_the_server_is_not_spliced(server, tmp_path, vae_bytes):
    import json as _json

    new = vae_bytes[:-100] + bytes(100)
    server.add_file("/" + NAME, new, etag='"v2"')
    part, meta, _ = partial_paths(tmp_path, NAME)
    part.write_bytes(vae_bytes[: len(vae_bytes) // 2])  # half of the old version
    from vae_lab.download.transfer import source_key

    meta.write_text(_json.dumps({"source": source_key(server.url("/" + NAME)), "validator": '"v1"',
                                 "total": len(vae_bytes)}))
    res = get(server.url("/" + NAME), tmp_path)
    (req,) = server.requests_for("/" + NAME)
    assert req.if_range == '"v1"' and req.status == 200  # the server said: changed, here is all of it
    assert Path(res.path).read_bytes() == new and res.sha256 == sha(new)


def test_download_job_reports_progress_and_can_be_cancelled(server, tmp_path, vae_bytes):
    from vae_lab.download.job import DownloadJob

    server.add_file("/" + NAME, vae_bytes)
    job = DownloadJob(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes), tokens=NO_TOKENS,
                      identify=False).start()
    assert job.wait(30)
    st = job.status()
    assert st["state"] == "done" and st["fraction"] == 1.0 and st["result"]["verified"]

    server.add_file("/slow/" + NAME, vae_bytes, rate=4e6)
    other = tmp_path / "other"
    job = DownloadJob(server.url("/slow/" + NAME), other, tokens=NO_TOKENS, identify=False).start()
    deadline = time.monotonic() + 10
    while job.done_bytes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    job.cancel()
    assert job.wait(10)
    st = job.status()
    assert st["state"] == "cancelled" and "cancelled" in st["error"] and listed(other) == []


# ----------------------------------------------------------------------------- identification


def test_downloaded_file_is_identified_without_hashing_it_again(server, tmp_path, vae_bytes, monkeypatch):
    from vae_lab.identity import hashing

    server.add_file("/" + NAME, vae_bytes)

    def no_second_pass(path):
        raise AssertionError(f"{path} was hashed again after the download")

    monkeypatch.setattr(hashing, "sha256_file", no_second_pass)
    res = get(server.url("/" + NAME), tmp_path, identify=True)
    assert res.info is not None, res.info_error
    assert res.info.file_sha256 == res.sha256 == sha(vae_bytes)
    assert res.info.kind == "kl" and res.info.latent_channels == 4 and len(res.info.weights_id) == 64
    d = res.to_dict()
    assert d["info"]["weights_id"] == res.info.weights_id and d["known"] is None


def test_a_file_that_is_not_a_vae_is_removed(server, tmp_path):
    header = b'{"lora_unet_down.alpha":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    header += b" " * (-len(header) % 8)
    blob = len(header).to_bytes(8, "little") + header + bytes(16)
    server.add_file("/lora.safetensors", blob)
    with pytest.raises(DownloadError, match="not a VAE.*downloaded file was deleted"):
        get(server.url("/lora.safetensors"), tmp_path, identify=True)
    assert os.listdir(tmp_path) == []


def test_settings_tokens_as_a_mapping_or_callable(server, tmp_path, vae_bytes, monkeypatch):
    from vae_lab.download.transfer import _token_policy as _policy

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("CIVITAI_API_TOKEN", "civ-env")
    p = _policy(lambda: {"hf": "hf-settings", "civitai": ""})
    assert p.tokens == {"hf": "hf-settings", "civitai": "civ-env"} and p.require_https
    assert _policy(None).tokens == {"civitai": "civ-env"}


def test_a_downloaded_pickle_can_be_converted_to_safetensors(server, tmp_path, ckpt_bytes):
    server.add_file("/vae.ckpt", ckpt_bytes)
    res = get(server.url("/vae.ckpt"), tmp_path, identify=True, to_safetensors=True)
    assert listed(tmp_path) == ["vae.safetensors"] and res.path == str(tmp_path / "vae.safetensors")
    assert res.converted_from == "vae.ckpt" and res.sha256 == sha(ckpt_bytes)  # the pickle never got a name
    # The converted file remembers what it was converted from.
    assert res.info.converted_from == "vae.ckpt" and res.info.kind == "kl"


def test_partial_metadata_never_stores_the_url(server, tmp_path, vae_bytes):
    server.add_file("/" + NAME, vae_bytes)
    server.script("/" + NAME, {"drop_at": 0.5})
    with pytest.raises(DownloadInterrupted):
        get(server.url("/" + NAME) + "?token=SECRET123", tmp_path, retries=0)
    _, meta, _ = partial_paths(tmp_path, NAME)
    assert meta.exists() and "SECRET123" not in meta.read_text() and "127.0.0.1" not in meta.read_text()


def test_a_file_system_error_is_one_clear_line(tmp_path, server, vae_bytes, capsys):
    from vae_lab.cli.main import main

    server.add_file("/" + NAME, vae_bytes)
    part, _, lock = partial_paths(tmp_path, NAME)
    part.mkdir()  # stands in for a disk that refuses the write
    code = main(["download", server.url("/" + NAME), "--dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot use") and err.count("\n") == 1
    assert listed(tmp_path) == [] and tmp_path not in lock.parents  # the lock is never in the VAE folder


def test_every_request_verifies_tls_and_follows_no_redirect_by_itself(tmp_path):
    import requests

    calls = []

    class Recorder:
        def get(self, url, **kw):
            calls.append(kw)
            raise requests.ConnectionError("no network in this test")

        def close(self):
            pass

    with pytest.raises(DownloadInterrupted, match="cannot reach huggingface.co"):
        download("https://huggingface.co/o/r/resolve/main/vae.safetensors", tmp_path, session=Recorder(),
                 tokens={"hf": "hf_T"}, retries=1, backoff=0.01, console=False, identify=False)
    assert len(calls) == 2
    for kw in calls:
        assert kw["verify"] is True and kw["allow_redirects"] is False and kw["stream"] is True
        assert kw["headers"]["Authorization"] == "Bearer hf_T" and kw["auth"] is not None  # no ~/.netrc
    assert listed(tmp_path) == []


def test_a_namesake_in_a_subfolder_is_reported(server, tmp_path, vae_bytes):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / NAME).write_bytes(b"another file")
    server.add_file("/" + NAME, vae_bytes)
    res = get(server.url("/" + NAME), tmp_path)
    assert any("same file name" in w and "old" in w for w in res.warnings)
    assert (tmp_path / "old" / NAME).read_bytes() == b"another file"


def test_a_server_announcing_another_hash_is_refused_before_the_body(server, tmp_path, vae_bytes):
    server.add_file("/" + NAME, vae_bytes, headers={"X-Linked-Etag": f'"{"1" * 64}"'})
    stall = threading.Event()
    server.script("/" + NAME, {"stall": stall})  # the body hangs: reading it would time out
    try:
        with pytest.raises(DownloadError, match="serves a different file.*nothing was downloaded"):
            get(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes), timeout=(5, 3), retries=0)
    finally:
        stall.set()
    assert_nothing_left(tmp_path)


def test_a_partial_left_next_to_the_finished_file_is_cleaned_up(server, tmp_path, vae_bytes):
    (tmp_path / NAME).write_bytes(vae_bytes)
    part, _, _ = partial_paths(tmp_path, NAME)
    part.write_bytes(vae_bytes)  # killed between the hard link and the unlink
    res = get(server.url("/" + NAME), tmp_path, sha256=sha(vae_bytes))
    assert res.already_present and os.listdir(tmp_path) == [NAME] and server.log == []


def test_a_name_the_webui_does_not_list_gets_a_warning(server, tmp_path, ckpt_bytes):
    server.add_file("/vae.pth", ckpt_bytes)
    res = get(server.url("/vae.pth"), tmp_path)
    assert os.listdir(tmp_path) == ["vae.pth"] and listed(tmp_path) == []
    assert any("will not show vae.pth" in w for w in res.warnings)
    res = get(server.url("/vae.pth"), tmp_path / "conv", identify=True, to_safetensors=True)
    assert listed(tmp_path / "conv") == ["vae.safetensors"] and not any("will not show" in w for w in res.warnings)


def test_a_content_length_larger_than_the_file_still_ends_verified(server, tmp_path, vae_bytes):
    path = "/" + NAME
    server.add_file(path, vae_bytes)
    server.script(path, {"lie_length": 1000})  # then closes: "connection closed at N of N+1000"
    res = get(server.url(path), tmp_path, sha256=sha(vae_bytes))
    assert server.requests_for(path)[-1].status == 416 and Path(res.path).read_bytes() == vae_bytes
