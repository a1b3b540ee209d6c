"""The site's SuperNode key pair: what authenticates a site to the aggregator.

With ``--enable-supernode-auth`` the SuperLink accepts only SuperNodes whose public key the
coordinator registered (``omopfed aggregator register-site``). The key is ECDSA on P-384, the
curve Flower's node authentication expects, written in OpenSSH format (the same files
``ssh-keygen -t ecdsa -b 384`` makes) so stewards can inspect them with familiar tools. The
private key never leaves the site: it is created with mode 0600 and only its ``.pub`` is sent.
"""

from __future__ import annotations

import hashlib
import os
from base64 import b64decode, b64encode
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from omopfed.errors import EXIT_CONFIG, OmopfedError


class NodeKeyError(OmopfedError):
    """A key file exists already, cannot be written, or is not a P-384 OpenSSH key."""

    code = "NODE_KEY"
    exit_code = EXIT_CONFIG


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    fingerprint: str  # SHA256:<base64>, as ssh-keygen -l prints it


def generate(private: Path, *, comment: str = "omopfed-site", force: bool = False) -> KeyPair:
    """Write ``private`` (0600) and ``private.pub``; refuse to overwrite unless ``force``."""
    public = private.with_name(private.name + ".pub")
    if not force and (private.exists() or public.exists()):
        raise NodeKeyError(f"{private} already exists", hint="use --force to replace the key pair")
    key = ec.generate_private_key(ec.SECP384R1())
    private_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public_line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    try:
        private.parent.mkdir(parents=True, exist_ok=True)
        private.unlink(missing_ok=True)
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_bytes)
        public.write_bytes(public_line + f" {comment}\n".encode())
    except OSError as exc:
        raise NodeKeyError(f"cannot write the key pair: {exc.strerror}") from None
    return KeyPair(private, public, fingerprint(public))


def fingerprint(public: Path) -> str:
    """The OpenSSH SHA-256 fingerprint of a public key file; checks it is ECDSA P-384."""
    text = read_public_key(public)
    blob = b64decode(text.split()[1])
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + b64encode(digest).decode().rstrip("=")


def read_public_key(public: Path) -> str:
    """The key line of an OpenSSH public key file, after checking it is ECDSA P-384."""
    try:
        text = public.read_text(encoding="utf-8").strip()
        key = serialization.load_ssh_public_key(text.encode())
    except OSError as exc:
        raise NodeKeyError(f"cannot read {public}: {exc.strerror}") from None
    except (ValueError, IndexError):
        raise NodeKeyError(f"{public} is not an OpenSSH public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise NodeKeyError(
            f"{public} is not an ECDSA P-384 key", hint="create one with `omopfed node keygen`"
        )
    return text
