"""Signed bundles: a server given trusted keys serves a bundle signed by one of them and refuses
anything else with one line naming the bundle and the key; without trusted keys unsigned bundles
serve as before."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aolo.runtime.bundle import MANIFEST_FILE, SIGNATURE_FILE, BundleError, PolicyBundle
from aolo.runtime.signing import SigningKeyError, load_trusted_keys, new_keypair, sign_bundle, verify_signer

from test_bundle import make_bundle


def _aolo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aolo", *args], capture_output=True, text=True, timeout=120)


def _serve_first_line(bundle: Path, *args: str) -> tuple[int | None, str, str]:
    """Start `aolo serve` on a free port; return (exit code or None if it started, first stdout line, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "aolo", "serve", str(bundle), "--backend", "reference", "--port",
                             "0", "--ledger", str(bundle.parent / "ledger.db"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if line:
            return None, line, ""
        proc.wait(timeout=60)
        return proc.returncode, "", proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture()
def keys(tmp_path) -> dict[str, Path]:
    trusted, other = tmp_path / "trusted", tmp_path / "other"
    release_key, release_pub, _ = new_keypair(tmp_path / "private", "release")
    trusted.mkdir()
    release_pub.rename(trusted / "release.pub")
    rogue_key, _, _ = new_keypair(other, "rogue")
    return {"release": release_key, "rogue": rogue_key, "trusted": trusted}


def test_keys_new_writes_a_private_key_only_its_owner_reads(tmp_path):
    r = _aolo("keys", "new", "ops", "--out", str(tmp_path / "k"))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(tmp_path / "k" / "ops.key").st_mode) == 0o600
    kid = r.stdout.strip().rsplit(" ", 1)[-1]
    assert list(load_trusted_keys(tmp_path / "k")) == [kid]
    again = _aolo("keys", "new", "ops", "--out", str(tmp_path / "k"))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_a_signed_bundle_serves_and_says_who_signed_it(tmp_path, keys):
    bundle = make_bundle(tmp_path)
    r = _aolo("keys", "sign", str(bundle), "--key", str(keys["release"]))
    assert r.returncode == 0, r.stderr
    kid = verify_signer(PolicyBundle.load(bundle), load_trusted_keys(keys["trusted"]))
    code, line, err = _serve_first_line(bundle, "--trusted-keys", str(keys["trusted"]))
    assert code is None and f"signed by trusted key {kid}" in line, (code, line, err)
    v = _aolo("verify", str(bundle), "--trusted-keys", str(keys["trusted"]), "--n-obs", "50")
    assert v.returncode == 0 and f"valid, by trusted key {kid}" in v.stdout, v.stdout + v.stderr


def test_one_byte_changed_after_signing_is_refused(tmp_path, keys):
    bundle = make_bundle(tmp_path)
    sign_bundle(bundle, keys["release"])
    mpath = bundle / MANIFEST_FILE
    manifest = json.loads(mpath.read_text())
    manifest["algo"] = "sac2"  # still a valid manifest, no longer the signed one
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"signature by key [0-9a-f]{16} does not match manifest\.json"):
        verify_signer(PolicyBundle.load(bundle), load_trusted_keys(keys["trusted"]))
    code, _, err = _serve_first_line(bundle, "--trusted-keys", str(keys["trusted"]))
    assert code == 2 and err.count("\n") == 1 and str(bundle) in err and "does not match" in err


def test_a_bundle_signed_by_an_untrusted_key_is_refused_naming_the_key(tmp_path, keys):
    bundle = make_bundle(tmp_path)
    kid = sign_bundle(bundle, keys["rogue"])
    code, _, err = _serve_first_line(bundle, "--trusted-keys", str(keys["trusted"]))
    assert code == 2 and err.count("\n") == 1 and f"signed by key {kid}, which is not among the trusted keys" in err


def test_unsigned_bundles_serve_only_when_no_keys_are_trusted(tmp_path, keys):
    bundle = make_bundle(tmp_path)
    code, line, _ = _serve_first_line(bundle)
    assert code is None and "listening" in line and "signed by" not in line
    code, _, err = _serve_first_line(bundle, "--trusted-keys", str(keys["trusted"]))
    assert code == 2 and "not signed" in err and str(bundle) in err


def test_bad_signature_and_key_files_are_one_line_errors(tmp_path, keys):
    bundle = make_bundle(tmp_path)
    (bundle / SIGNATURE_FILE).write_text('{"algorithm": "rsa", "key_id": "00", "signature": ""}')
    with pytest.raises(BundleError, match=r"signature\.json: field 'algorithm'"):
        PolicyBundle.load(bundle)
    (keys["trusted"] / "junk.pub").write_text("not a key\n")
    with pytest.raises(SigningKeyError, match=r"junk\.pub: not a PEM public key"):
        load_trusted_keys(keys["trusted"])
    with pytest.raises(SigningKeyError, match="no \\*.pub keys"):
        load_trusted_keys(tmp_path / "private")


def test_the_verified_signer_is_on_healthz_and_on_every_ledger_row(tmp_path, keys):
    from aolo.runtime.ledger import Ledger

    from test_gateway_sidecar import Client, outcome, running_gateway, telemetry

    bundle = make_bundle(tmp_path)
    kid = sign_bundle(bundle, keys["release"])
    with running_gateway(bundle, tmp_path / "signed.db", trusted_keys=keys["trusted"]) as server:
        client = Client(server.port)
        status, health = client.get("/healthz")
        assert status == 200 and health["bundle_signer"] == kid
        assert client.post("/v1/decide", telemetry("s1"))[0] == 200
        status, row = client.post("/v1/outcome", outcome("s1"))
        assert status == 200 and row["bundle_signer"] == kid
        client.close()
    ledger = Ledger(tmp_path / "signed.db")
    try:
        assert ledger.get("s1").bundle_signer == kid
    finally:
        ledger.close()
