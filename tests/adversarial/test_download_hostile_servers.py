"""Downloads from servers that lie, trickle, compress, change the file under a resume, redirect
to other ports, or are not there at all — all real HTTP servers on 127.0.0.1.

Each case ends with: a clear one-line error, bounded time, nothing listable in the folder that
is not a verified VAE, and nothing hidden left unless the message says it was kept.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from download_kit import NO_TOKENS, get, listed, private_hash_cache, server, sha  # noqa: F401 (fixtures)
from testkit.httpserver import FileServer

from vae_lab.download import transfer as dl
from vae_lab.download.partial import kept_partials, partial_paths
from vae_lab.errors import (
    DownloadCancelled,
    DownloadError,
    DownloadInterrupted,
    DownloadRefused,
    DownloadTimedOut,
    NoNetwork,
    NotEnoughSpace,
)

NAME = "hostile.safetensors"


@pytest.fixture(scope="module")
def vae_bytes() -> bytes:
    from testkit.factories import TINY_KL, random_kl_state_dict
    from safetensors.torch import save

    return save(random_kl_state_dict(TINY_KL, seed=5))


@pytest.fixture(scope="module")
def other_vae_bytes(vae_bytes) -> bytes:
    """A second version of the same file: same size and header, other values."""
    return vae_bytes[:-4096] + bytes(4096)




def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and text
    return text


# --------------------------------------------------------------------------- publish only what passed


def test_the_file_is_identified_before_it_gets_its_name(server, tmp_path, vae_bytes, monkeypatch):
    """A crash while identifying can leave nothing listable: there is no window."""
    from vae_lab.identity import identify

    real = identify.inspect
    seen = []

    def inspect_spy(path, **kw):
        seen.append((Path(path).name, listed(tmp_path)))
        return real(path, **kw)

    monkeypatch.setattr(identify, "inspect", inspect_spy)
    server.add_file("/" + NAME, vae_bytes)
    res = get(server.url("/" + NAME), tmp_path, identify=True)
    assert seen and seen[0][1] == []  # nothing listable while the bytes were being judged
    assert seen[0][0].startswith(".")  # the hidden partial was what got identified
    assert res.info is not None and res.info.path == res.path and listed(tmp_path) == [NAME]


@pytest.mark.parametrize("failure", [RuntimeError("reader bug"), MemoryError()])
def test_an_unexpected_error_while_identifying_publishes_nothing(server, tmp_path, vae_bytes, monkeypatch, failure):
    from vae_lab.identity import identify

    def broken(path, **kw):
        raise failure

    monkeypatch.setattr(identify, "inspect", broken)
    server.add_file("/" + NAME, vae_bytes)
    with pytest.raises(DownloadRefused, match="could not be checked as a VAE.*deleted") as err:
        get(server.url("/" + NAME), tmp_path, identify=True)
    one_line(err.value)
    assert os.listdir(tmp_path) == []


def test_a_lora_is_refused_without_ever_being_listable(server, tmp_path):
    header = b'{"lora_unet_down.alpha":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    header += b" " * (-len(header) % 8)
    server.add_file("/lora.safetensors", len(header).to_bytes(8, "little") + header + bytes(16))
    with pytest.raises(DownloadRefused, match=r"^lora\.safetensors: .*not a VAE.*deleted"):
        get(server.url("/lora.safetensors"), tmp_path, identify=True)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- resume never splices


def test_no_validator_means_a_resume_starts_over(server, tmp_path, vae_bytes, other_vae_bytes):
    """No ETag, no Last-Modified: the second request must not ask for a range of what may be
    another version. Here it is another version, and the result must be exactly that one."""
    path = "/" + NAME

    def swap():
        server.add_file(path, other_vae_bytes, validators=False)

    server.add_file(path, vae_bytes, validators=False)
    server.script(path, {"drop_at": 0.5, "after": swap})
    res = get(server.url(path), tmp_path)
    _, second = server.requests_for(path)
    assert second.range is None and second.status == 200
    assert Path(res.path).read_bytes() == other_vae_bytes and res.sha256 == sha(other_vae_bytes)


def test_a_changed_etag_on_a_resume_starts_over(server, tmp_path, vae_bytes, other_vae_bytes):
    """A server (or cache) that ignores If-Range and sends 206 of a new version with a new ETag."""
    path = "/" + NAME

    def swap():
        server.add_file(path, other_vae_bytes, etag='"v2"')

    server.add_file(path, vae_bytes, etag='"v1"')
    server.script(path, {"drop_at": 0.5, "after": swap}, {"ignore_if_range": True})
    res = get(server.url(path), tmp_path)
    reqs = server.requests_for(path)
    assert reqs[1].if_range == '"v1"' and reqs[1].status == 206  # asked properly, was answered wrongly
    assert reqs[-1].range is None  # ... so it started over
    assert Path(res.path).read_bytes() == other_vae_bytes


def test_a_partial_left_without_a_validator_is_not_resumed_by_a_new_process(server, tmp_path, vae_bytes,
                                                                             other_vae_bytes):
    path = "/" + NAME
    server.add_file(path, vae_bytes, validators=False)
    server.script(path, {"drop_at": 0.5})
    with pytest.raises(DownloadInterrupted, match="nothing was kept") as err:
        get(server.url(path), tmp_path, retries=0)
    assert err.value.kept_bytes == 0 and os.listdir(tmp_path) == []  # not resumable: not kept
    server.add_file(path, other_vae_bytes, validators=False)
    res = get(server.url(path), tmp_path)
    assert server.requests_for(path)[-1].range is None and Path(res.path).read_bytes() == other_vae_bytes


# --------------------------------------------------------------------------- lying and compressing servers


def test_a_server_announcing_more_than_it_sends_is_an_interruption_that_says_what_is_kept(server, tmp_path,
                                                                                          vae_bytes):
    path = "/" + NAME
    server.add_file(path, vae_bytes)
    server.script(path, *[{"drop_at": 0.5}] * 3)  # the full Content-Length, half the bytes, every time
    with pytest.raises(DownloadInterrupted) as err:
        get(server.url(path), tmp_path, retries=1)
    text = one_line(err.value)
    part, _, _ = partial_paths(tmp_path, NAME)
    assert err.value.kept_bytes == part.stat().st_size > 0
    assert "kept hidden" in text and "resume" in text and listed(tmp_path) == []


def test_a_gzip_response_with_content_length_is_decoded(server, tmp_path, vae_bytes):
    path = "/" + NAME
    server.add_file(path, vae_bytes, encoding="gzip")
    res = get(server.url(path), tmp_path, sha256=sha(vae_bytes), size=len(vae_bytes))
    assert server.requests_for(path)[0].accept_encoding == "identity"
    assert Path(res.path).read_bytes() == vae_bytes and res.verified


def test_a_gzip_bomb_is_cut_off_at_the_expected_size(server, tmp_path, vae_bytes):
    path = "/" + NAME
    bomb = vae_bytes[:64] + bytes(200 << 20)  # 200 MB of zeros: ~200 kB compressed
    server.add_file(path, bomb, encoding="gzip")
    with pytest.raises(DownloadRefused, match="more than the expected"):
        get(server.url(path), tmp_path, size=len(vae_bytes))
    assert os.listdir(tmp_path) == []


def test_an_undecodable_encoding_is_named(server, tmp_path, vae_bytes):
    path = "/" + NAME
    server.add_file(path, vae_bytes, headers={"Content-Encoding": "br"})
    with pytest.raises(DownloadRefused, match=r"compressed the file \(br\).*asked for none") as err:
        get(server.url(path), tmp_path)
    one_line(err.value)
    assert os.listdir(tmp_path) == []


def test_refused_responses_are_described_never_echoed(server, tmp_path):
    secret = "<script>fetch('//evil')</script> EVIL-TEXT"
    server.script("/a/" + NAME, {"status": 418, "body": secret.encode(), "reason": "EVIL-REASON",
                                 "content_type": "text/html"})
    with pytest.raises(DownloadRefused) as err:
        get(server.url("/a/" + NAME), tmp_path)
    text = one_line(err.value)
    assert "HTTP 418" in text and "text/html" in text and "EVIL" not in text
    server.script("/b/" + NAME, {"body": b'{"error": "EVIL-TEXT <img src=x>"}', "content_type": "application/json"})
    with pytest.raises(DownloadRefused, match="JSON") as err:
        get(server.url("/b/" + NAME), tmp_path)
    assert "EVIL" not in str(err.value) and "<img" not in str(err.value)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- redirects to other ports, host policy


def test_a_host_policy_is_asked_at_every_hop(server, tmp_path, vae_bytes):
    with FileServer() as other:
        other.add_file("/internal/" + NAME, vae_bytes)
        server.script("/" + NAME, {"redirect": other.url("/internal/" + NAME)})
        asked = []

        def same_port_only(url):
            asked.append(url)
            if f":{server.port}/" not in url:
                raise DownloadRefused("refusing a redirect to another port")

        with pytest.raises(DownloadRefused, match="another port"):
            get(server.url("/" + NAME), tmp_path, policy=same_port_only)
        assert other.log == [] and len(asked) == 2  # refused before a byte was sent to it
        assert os.listdir(tmp_path) == []

        class Policy:  # an object with check(url) works too
            def check(self, url):
                asked.append(url)

        server.script("/" + NAME, {"redirect": other.url("/internal/" + NAME)})
        res = get(server.url("/" + NAME), tmp_path, policy=Policy())
        assert Path(res.path).read_bytes() == vae_bytes and len(other.log) == 1


# --------------------------------------------------------------------------- time, space, names


def test_a_trickling_server_is_stopped_by_the_deadline(server, tmp_path, vae_bytes):
    path = "/" + NAME
    server.add_file(path, vae_bytes)
    server.script(path, {"trickle": 0.2})  # 5 bytes per second
    t0 = time.monotonic()
    with pytest.raises(DownloadTimedOut, match=r"longer than its 1\.5 s limit") as err:
        get(server.url(path), tmp_path, deadline=1.5)
    assert time.monotonic() - t0 < 5
    one_line(err.value)
    assert listed(tmp_path) == []


def test_a_silent_server_is_stopped_by_the_deadline_not_the_read_timeout(server, tmp_path, vae_bytes):
    path = "/" + NAME
    server.add_file(path, vae_bytes)
    stall = threading.Event()
    server.script(path, {"stall": stall})
    t0 = time.monotonic()
    try:
        with pytest.raises(DownloadTimedOut):
            get(server.url(path), tmp_path, deadline=1.0, timeout=(5, 60), retries=3)
    finally:
        stall.set()
    assert time.monotonic() - t0 < 5


def test_not_enough_free_space_is_refused_before_writing(server, tmp_path, vae_bytes, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: usage(10 << 30, 10 << 30, 1 << 20) if Path(p) == tmp_path else real(p))
    server.add_file("/" + NAME, vae_bytes)
    with pytest.raises(NotEnoughSpace, match=r"not enough free space for hostile\.safetensors.*needs 5\.0 MB") as err:
        get(server.url("/" + NAME), tmp_path)
    one_line(err.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("length", [243, 250, 255])
def test_names_up_to_255_bytes_work(server, tmp_path, vae_bytes, length):
    name = "v" * (length - len(".safetensors")) + ".safetensors"
    assert len(name.encode()) == length
    server.add_file("/" + name, vae_bytes)
    res = get(server.url("/" + name), tmp_path, sha256=sha(vae_bytes))
    assert os.listdir(tmp_path) == [name] and res.filename == name


# --------------------------------------------------------------------------- cancel tells the truth


def test_cancel_says_what_stays_and_kept_partials_lists_it(server, tmp_path, vae_bytes):
    path = "/" + NAME
    server.add_file(path, vae_bytes, rate=4e6)
    stop = threading.Event()
    with pytest.raises(DownloadCancelled) as err:
        get(server.url(path), tmp_path, cancel=stop, progress=lambda d, t: d > 1_000_000 and stop.set())
    text = one_line(err.value)
    (kept,) = kept_partials(tmp_path)
    assert kept.filename == NAME and kept.size == err.value.kept_bytes > 0 and kept.total == len(vae_bytes)
    assert "kept hidden" in text and "resume" in text and listed(tmp_path) == []


def test_cancel_before_any_byte_leaves_nothing_and_says_so(server, tmp_path, vae_bytes):
    path = "/" + NAME
    server.add_file(path, vae_bytes)
    server.script(path, {"status": 503, "headers": {"Retry-After": "30"}})
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(DownloadCancelled, match="nothing was kept"):
        get(server.url(path), tmp_path, cancel=stop)
    assert os.listdir(tmp_path) == [] and kept_partials(tmp_path) == []


# --------------------------------------------------------------------------- offline


@pytest.fixture
def offline(monkeypatch):
    """No DNS, as on a machine without network: every lookup fails the way getaddrinfo does then."""
    calls = []

    def no_dns(host, *args, **kwargs):
        calls.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    return calls


def test_offline_a_catalog_download_fails_at_once_in_plain_words(tmp_path, offline):
    t0 = time.monotonic()
    with pytest.raises(NoNetwork) as err:
        dl.download("sdxl-vae-fp16-fix", tmp_path, console=False, tokens=NO_TOKENS)
    elapsed = time.monotonic() - t0
    assert str(err.value) == "no network: could not resolve huggingface.co or civitai.com"
    assert elapsed < 3 and len(offline) == 3  # one lookup per mirror, no retries
    assert os.listdir(tmp_path) == []  # no lock, no partial


def test_offline_the_cli_says_one_line_and_exits_2(tmp_path, offline, capsys):
    from vae_lab.cli.main import main

    code = main(["download", "sd-vae-ft-mse", "--dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err == "error: no network: could not resolve huggingface.co\n"
    assert "resume" not in err and os.listdir(tmp_path) == []


def test_offline_in_the_middle_of_a_resume_keeps_the_bytes_and_says_so(server, tmp_path, vae_bytes, monkeypatch):
    path = "/" + NAME
    server.add_file(path, vae_bytes)
    server.script(path, {"drop_at": 0.5})
    real = socket.getaddrinfo
    state = {"calls": 0}

    def dns_goes_away(host, *a, **kw):
        state["calls"] += 1
        if state["calls"] > 1:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", dns_goes_away)
    with pytest.raises(NoNetwork, match=r"could not resolve localhost; .* kept hidden .* resume") as err:
        get(server.url(path, host="localhost"), tmp_path)
    assert kept_partials(tmp_path)[0].size == len(vae_bytes) // 2 and listed(tmp_path) == []
    assert isinstance(err.value, DownloadError)
