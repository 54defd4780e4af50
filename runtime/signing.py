"""Signed policy bundles: Ed25519 keys, a detached signature of the manifest, trusted-key checks.

A bundle's ``manifest.json`` pins every file by SHA-256, so signing the manifest's bytes signs the
bundle. The signature lives beside it in ``signature.json``::

    {"algorithm": "ed25519", "key_id": "<16 hex>", "signature": "<base64, 64 bytes>"}

``key_id`` is the first 16 hex digits of the SHA-256 of the raw 32-byte public key; it names the
signer in ``/healthz`` and in every ledger row. Keys are PEM files: ``NAME.key`` (PKCS#8 private
key, created 0600) and ``NAME.pub`` (SubjectPublicKeyInfo). A server given a folder of trusted
``*.pub`` keys serves only bundles signed by one of them. The cryptography is the ``cryptography``
package's; nothing here is hand-written but the file layout.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from .atomic_files import write_text_atomic
from .bundle import MANIFEST_FILE, SIGNATURE_ALGORITHM, SIGNATURE_FILE, BundleError, PolicyBundle

__all__ = ["SigningKeyError", "key_id", "load_public_key", "load_trusted_keys", "new_keypair", "sign_bundle",
           "verify_signer"]

MAX_KEY_BYTES = 16 << 10
MAX_TRUSTED_KEYS = 1_000


class SigningKeyError(ValueError):
    """A key file that cannot be read or is not an Ed25519 key; the message names the file."""


def key_id(public_key) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def new_keypair(out_dir: str | os.PathLike, name: str) -> tuple[Path, Path, str]:
    """Create ``NAME.key`` (0600) and ``NAME.pub`` in ``out_dir``.

    :return: the private key's path, the public key's path, the key id

    :raises SigningKeyError: a bad name, or either file exists already
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (Encoding, NoEncryption, PrivateFormat,
                                                              PublicFormat)

    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise SigningKeyError(f"key name {name!r}: letters, digits, '-', '_' and '.' only")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = out / f"{name}.key", out / f"{name}.pub"
    for p in (key_path, pub_path):
        if p.exists():
            raise SigningKeyError(f"{p}: already exists; choose another name")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return key_path, pub_path, key_id(private.public_key())


def _read_key_file(path: Path) -> bytes:
    try:
        data = path.read_bytes() if path.stat().st_size <= MAX_KEY_BYTES else None
    except OSError as e:
        raise SigningKeyError(f"{path}: cannot read ({e.strerror})") from None
    if data is None:
        raise SigningKeyError(f"{path}: larger than {MAX_KEY_BYTES} bytes; not a key file")
    return data


def _load_private_key(path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(_read_key_file(path), password=None)
    except (ValueError, TypeError) as e:
        raise SigningKeyError(f"{path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: a {type(key).__name__}, not an Ed25519 key")
    return key


def load_trusted_keys(folder: str | os.PathLike) -> dict[str, object]:
    """The ``*.pub`` keys in ``folder`` by key id.

    :raises SigningKeyError: not a folder, no keys in it, or a file that is not an Ed25519 public key
    """
    root = Path(folder)
    if not root.is_dir():
        raise SigningKeyError(f"{root}: trusted keys must be a folder of *.pub files")
    keys: dict[str, object] = {}
    for path in sorted(root.glob("*.pub"))[:MAX_TRUSTED_KEYS + 1]:
        if len(keys) == MAX_TRUSTED_KEYS:
            raise SigningKeyError(f"{root}: more than {MAX_TRUSTED_KEYS} keys")
        kid, key = load_public_key(path)
        keys[kid] = key
    if not keys:
        raise SigningKeyError(f"{root}: no *.pub keys; a server with no trusted key could serve nothing")
    return keys


def load_public_key(path: Path) -> tuple[str, object]:
    """(key id, key) of a PEM Ed25519 public key file.

    :raises SigningKeyError: unreadable, or not an Ed25519 public key
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(_read_key_file(path))
    except (ValueError, TypeError) as e:
        raise SigningKeyError(f"{path}: not a PEM public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path}: a {type(key).__name__}, not an Ed25519 key")
    return key_id(key), key


def sign_bundle(bundle_dir: str | os.PathLike, private_key_path: str | os.PathLike) -> str:
    """Sign a written bundle's manifest with the key in ``private_key_path``; returns the key id.

    The bundle is loaded (and so verified) first: only a consistent bundle is signed.

    :raises BundleError: the bundle does not load
    :raises SigningKeyError: the key file is not an Ed25519 private key
    """
    bundle = PolicyBundle.load(bundle_dir)
    key = _load_private_key(Path(private_key_path))
    signature = key.sign((bundle.path / MANIFEST_FILE).read_bytes())
    kid = key_id(key.public_key())
    text = json.dumps({"algorithm": SIGNATURE_ALGORITHM, "key_id": kid,
                       "signature": base64.b64encode(signature).decode()})
    write_text_atomic(bundle.path / SIGNATURE_FILE, text + "\n")
    return kid


def verify_signer(bundle: PolicyBundle, trusted: dict[str, object]) -> str:
    """The key id of ``bundle``'s signer, when it is one of ``trusted`` and the signature holds.

    :raises BundleError: unsigned, signed by an untrusted key, or a signature that does not verify
        the manifest's bytes (one line naming the bundle and the key)
    """
    from cryptography.exceptions import InvalidSignature

    sig = bundle.signature
    if sig is None:
        raise BundleError(f"{bundle.path}: not signed ({SIGNATURE_FILE} missing), and this server serves only "
                          "bundles signed by a trusted key")
    key = trusted.get(sig.key_id)
    if key is None:
        raise BundleError(f"{bundle.path}: signed by key {sig.key_id}, which is not among the trusted keys "
                          f"({', '.join(sorted(trusted))})")
    try:
        key.verify(sig.signature, bundle.manifest_bytes)  # type: ignore[attr-defined]
    except InvalidSignature:
        raise BundleError(f"{bundle.path}: the signature by key {sig.key_id} does not match {MANIFEST_FILE}") from None
    return sig.key_id
