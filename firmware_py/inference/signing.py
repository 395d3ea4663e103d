"""Ed25519 signature of the model set, verified offline (docs/signing.md).

What is signed: the exact bytes of manifest.yaml. The manifest lists every model file with its
sha256 and size, so the signature covers the whole set; verification then checks that the folder
holds exactly the listed model files (no missing, and no unlisted file of any registered model format,
firmware_py.inference.formats) with those digests.

Signature file (manifest.yaml.sig), one line of ASCII:
    ed25519 <key id: first 16 hex digits of sha256(raw public key)> <base64 signature>
"""
from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware_py.errors import ModelError, SecurityError
from firmware_py.files import read_bounded
from firmware_py.inference.formats import model_suffixes
from firmware_py.inference.manifest import MAX_MANIFEST_BYTES, Manifest, parse_manifest

MANIFEST = "manifest.yaml"
SIGNATURE = "manifest.yaml.sig"
# Sub-folders of the model folder that are not part of the signed set (training outputs, keys).
UNSIGNED_DIRS = ("build", "keys", "__pycache__")


class ModelSetRefused(SecurityError):
    """The model set failed verification; `kind` is one of events.SECURITY_KINDS."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def generate_keypair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a fresh Ed25519 key pair."""
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return priv, pub


def write_keypair(private_path: str, public_path: str) -> str:
    """Write a new key pair (private file mode 0600); returns the key id."""
    priv, pub = generate_keypair()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(priv)
    with open(public_path, "wb") as f:
        f.write(pub)
    return key_id(load_public_key(public_path))


# A key or a signature is under a kilobyte: anything far bigger is the wrong file.
MAX_KEY_BYTES = 64 * 1024


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _read_key(path: str, what: str, fix: str, error=ModelError) -> bytes:
    try:
        return read_bounded(path, MAX_KEY_BYTES)
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror}); {fix}") from None


def load_public_key(path: str) -> Ed25519PublicKey:
    """The trusted key; a missing or malformed one refuses the set (kind unreadable-public-key)."""
    def refused(message: str) -> ModelSetRefused:
        return ModelSetRefused("unreadable-public-key", message)

    data = _read_key(path, "public key", "set models.public_key (or --public-key) to the trusted key's PEM file",
                     refused)
    try:
        key = serialization.load_pem_public_key(data) if data.lstrip().startswith(b"-----") else (
            Ed25519PublicKey.from_public_bytes(data) if len(data) == 32 else None)
    except ValueError:
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise refused(f"{path}: not an Ed25519 public key (PEM or 32 raw bytes); set models.public_key to the "
                      "trusted key's PEM file")
    return key


def load_private_key(path: str) -> Ed25519PrivateKey:
    data = _read_key(path, "private key", "pass the signer's PEM file with --key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ModelError(f"{path}: not an unencrypted Ed25519 private key in PEM; use `firmware-py models keygen`")
    return key


def signature_line(manifest_bytes: bytes, private: Ed25519PrivateKey) -> str:
    sig = private.sign(manifest_bytes)
    return f"ed25519 {key_id(private.public_key())} {base64.b64encode(sig).decode()}\n"


def manifest_path_of(path: str) -> str:
    """A model folder or a manifest file -> the manifest file's path."""
    return os.path.join(path, MANIFEST) if os.path.isdir(path) else path


def signature_path_of(manifest_path: str) -> str:
    return manifest_path + ".sig"


def sign_model_set(path: str, private_key_path: str, *, load_check: bool = True,
                   timeout_s: float | None = None) -> str:
    """Check the folder against its manifest, then write the signature.

    Refuses to sign a set that would not verify (digests, no extra files) or, with load_check,
    whose files cannot run: each is loaded, allocated, checked against the manifest's input and
    output and invoked in a child process (firmware_py.inference.isolation). A refused set is left
    unsigned: an existing signature is removed, so a set the signer refused never ships with the
    signature of an earlier version of it. load_check=False signs what the interpreter has not
    seen (tests build deliberately broken signed sets so). path: the model folder or its manifest
    file. Returns the signing key's id.
    """
    private = load_private_key(private_key_path)
    manifest_path = manifest_path_of(path)
    sig_path = signature_path_of(manifest_path)
    try:
        data = _read_manifest(manifest_path)
        manifest = parse_manifest(data, manifest_path)
        check_files(manifest, manifest.root)
        if load_check:
            from firmware_py.inference import isolation

            isolation.refuse(isolation.check_model_set(manifest, timeout_s=timeout_s or isolation.DEFAULT_TIMEOUT_S),
                             isolation.NOT_OK)
    except ModelError as e:
        if not os.path.exists(sig_path):
            raise
        os.remove(sig_path)
        message = f"{e} (not signed; removed the old signature {sig_path})"
        raise (ModelSetRefused(e.kind, message) if isinstance(e, ModelSetRefused) else ModelError(message)) from None
    line = signature_line(data, private)
    with open(sig_path, "w", encoding="ascii") as f:
        f.write(line)
    return key_id(private.public_key())


def _read_manifest(path: str) -> bytes:
    try:
        return read_bounded(path, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise ModelSetRefused("missing-manifest", f"{path}: manifest missing; install a signed model set") from None
    except OSError as e:
        raise ModelSetRefused("unreadable-manifest", f"{path}: cannot read the manifest ({e.strerror}); point "
                              "models.manifest at the set's manifest.yaml") from None


def verify_signature(manifest_bytes: bytes, sig_path: str, public: Ed25519PublicKey) -> None:
    try:
        text = read_bounded(sig_path, MAX_KEY_BYTES).decode("ascii", "replace")
    except FileNotFoundError:
        raise ModelSetRefused(
            "missing-signature", f"{sig_path}: signature missing; sign the set with `firmware-py models sign`"
        ) from None
    except (OSError, UnicodeDecodeError):
        raise ModelSetRefused("unreadable-signature", f"{sig_path}: signature unreadable; re-sign the set") from None
    parts = text.split()
    try:
        if len(parts) != 3 or parts[0] != "ed25519":
            raise ValueError
        sig = base64.b64decode(parts[2], validate=True)
        if len(sig) != 64:
            raise ValueError
    except ValueError:
        raise ModelSetRefused(
            "unreadable-signature", f"{sig_path}: not an 'ed25519 <key id> <base64>' signature line; re-sign the set"
        ) from None
    trusted = key_id(public)
    if parts[1] != trusted:
        raise ModelSetRefused(
            "wrong-key", f"{sig_path}: signed by key {parts[1]} but this device trusts key {trusted}; "
            "install a set signed with the device's key or configure the matching public key"
        )
    try:
        public.verify(sig, manifest_bytes)
    except InvalidSignature:
        raise ModelSetRefused(
            "bad-signature", f"{sig_path}: signature does not match the manifest (manifest altered or damaged); "
            "reinstall the signed model set"
        ) from None


def _model_files(root: str) -> set[str]:
    """Files of any registered model format below root (outside the unsigned folders)."""
    suffixes = model_suffixes()
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in UNSIGNED_DIRS]
        for name in filenames:
            if name.endswith(suffixes):
                found.add(os.path.normpath(os.path.join(rel_dir, name)))
    return found


def check_files(manifest: Manifest, root: str) -> None:
    """Every listed file present with its size and sha256; no unlisted model file of any format."""
    listed = {os.path.normpath(f.path): f for f in manifest.files()}
    present = _model_files(root)
    extra = sorted(present - set(listed))
    if extra:
        raise ModelSetRefused(
            "extra-file", f"{os.path.join(root, extra[0])}: not listed in the signed manifest; remove it or "
            "rebuild and re-sign the manifest"
        )
    for rel, f in sorted(listed.items()):
        path = os.path.join(root, rel)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise ModelSetRefused(
                "missing-file", f"{path}: listed in the signed manifest but missing; reinstall the model set"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != f.bytes or digest != f.sha256:
            raise ModelSetRefused(
                "digest-mismatch", f"{path}: sha256 {digest[:12]}... ({len(data)} bytes) does not match the signed "
                f"manifest ({f.sha256[:12]}..., {f.bytes} bytes); reinstall the model set"
            )


def verify_model_set(path: str, public_key_path: str) -> tuple[Manifest, bytes]:
    """Offline verification of signature, manifest and files; returns (manifest, manifest bytes).

    path: the model folder or its manifest file.
    """
    public = load_public_key(public_key_path)
    manifest_path = manifest_path_of(path)
    data = _read_manifest(manifest_path)
    verify_signature(data, signature_path_of(manifest_path), public)
    manifest = parse_manifest(data, manifest_path)
    check_files(manifest, manifest.root)
    return manifest, data
