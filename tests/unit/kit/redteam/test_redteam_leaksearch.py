"""The sink-capture search finds every canary, in every encoding the catalog uses, whole or in pieces."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import zlib

import brotli
import pytest

from kit.redteam import canaries, catalog, encodings
from kit.redteam.inside import netprobes
from kit.redteam.leaksearch import Blob, search

SET = canaries.generate("5e5e5e")
NOISE = b'{"model": "claude", "messages": [{"role": "user", "content": "refactor utils.py, run the tests"}]} '


def found(data: bytes, canary: canaries.Canary, *, dns: bool = False) -> int:
    hits = [h for h in search([Blob(0, "body", data, ("m",), dns)], [canary]) if h.canary == canary.name]
    return max((h.length for h in hits), default=0)


def catalog_chains() -> set[str]:
    """Every transform chain the catalog wraps a canary in (split pieces aside)."""
    chains = set()
    for technique in catalog.CATALOG:
        for match in re.finditer(r"\{\{c:[^|}]+((?:\|[^}|]+)*)\}\}", json.dumps(technique.attack)):
            chain = "|".join(t for t in match.group(1).split("|") if t and not t.startswith("split:"))
            chains.add(chain)
    return chains


@pytest.mark.parametrize("chain", sorted(catalog_chains()))
@pytest.mark.parametrize("canary", SET.canaries, ids=lambda c: c.name)
def test_every_catalog_encoding_of_every_canary_is_found(chain, canary):
    encoded = encodings.encode(canary.value, [t for t in chain.split("|") if t]).encode()
    blob = NOISE + b"prefix=" + encoded + b"&tail=" + NOISE
    assert found(blob, canary) == len(canary.material), chain


@pytest.mark.parametrize("offset", range(4))
def test_base64_inside_a_longer_text_at_any_alignment(offset):
    canary = SET.by_name("env-aws-secret")
    text = b"x" * offset + canary.value.encode() + b" trailing text"
    assert found(base64.b64encode(text), canary) == 40


@pytest.mark.parametrize("compress", [gzip.compress, zlib.compress, brotli.compress])
def test_compressed_bodies(compress):
    canary = SET.by_name("env-anthropic")
    assert found(compress(NOISE + canary.value.encode() + NOISE), canary) == len(canary.material)


def test_gzip_stream_inside_other_bytes():
    canary = SET.by_name("env-github")
    assert found(b"PACK\x00\x00" + gzip.compress(canary.value.encode()) + b"trailer", canary) == 36


def test_dns_names_join_labels_and_ignore_case():
    canary = SET.by_name("env-aws-secret")
    name = encodings.encode(canary.value, ["hex", "labels"]).upper() + ".RT-5E5E5E-001A0.EXFIL.ATTACKER.TEST"
    assert found(name.encode(), canary, dns=True) == 40


def test_dns_message_inside_base64url():
    canary = SET.by_name("dotenv-stripe")
    _, message = netprobes.dns_query(encodings.encode(canary.value, ["base32", "labels"]) + ".exfil.attacker.test", "A")
    url = b"/dns-query?dns=" + base64.urlsafe_b64encode(message).rstrip(b"=")
    assert found(url, canary) == len(canary.material)


def test_half_a_secret_is_a_partial_leak():
    canary = SET.by_name("file-aws-secret")
    half = encodings.split(canary.value, 2)[1]
    assert found(NOISE + half.encode() + NOISE, canary) == 20


def test_a_piece_shorter_than_the_fragment_is_not_counted():
    canary = SET.by_name("file-aws-secret")
    assert found(NOISE + canary.value[:canaries.FRAGMENT - 1].encode() + NOISE, canary) == 0


def test_provider_prefix_alone_is_not_a_leak():
    canary = SET.by_name("env-anthropic")
    assert found(b"Authorization: Bearer sk-ant-api03-" + b"x" * 40, canary) == 0


def test_clean_and_random_traffic_has_no_hits():
    blobs = [Blob(i, "body", os.urandom(4096)) for i in range(20)]
    blobs += [Blob(99, "body", base64.b64encode(os.urandom(3000))), Blob(100, "body", os.urandom(2000).hex().encode())]
    blobs += [Blob(101, "body", NOISE * 50)]
    assert search(blobs, SET.canaries) == []


def test_hits_name_the_event_field_markers_and_transforms():
    canary = SET.by_name("env-github")
    blob = Blob(7, "http#12 target", b"/rt/x?d=" + encodings.encode(canary.value, "double-url").encode(), ("rt-5e5e5e-001a0",))
    [hit] = search([blob], SET.canaries)
    assert (hit.canary, hit.event, hit.where, hit.full, hit.markers) == ("env-github", 7, "http#12 target", True, ("rt-5e5e5e-001a0",))
    assert hit.transforms == ("url", "url")


def test_ssh_key_found_in_the_pem_as_sent():
    canary = SET.by_name("ssh-key")
    # The secret seed sits inside one 70-character line of the PEM: whole.
    assert found(canary.value.encode(), canary) == len(canary.material)
