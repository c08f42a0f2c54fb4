"""Payload encryption: AES-256-GCM on every payload the workflow's client and worker send to
Temporal (inputs, results, signals, updates, queries' answers, activity arguments), so that
the server, its database and its web UI hold only ciphertext.

Keys come from configuration: `COLLECTION_CODEC_KEYS="k2:<base64 32 bytes>,k1:<...>"`. The
first key encrypts; every listed key decrypts, so a key is rotated by putting the new one
first and keeping the old ones as long as histories written with them are kept. The key id
travels in the payload's metadata. Search attributes are not payloads the codec sees: they
stay readable for visibility, which is why none of them carries personal data.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, PayloadCodec

from service.converter import DATA_CONVERTER

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE = 12


class CodecKeyError(ValueError):
    """Keys that cannot be used, or a payload no configured key decrypts."""


@dataclass(frozen=True)
class Keys:
    current: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, text: str) -> Keys:
        """`id:base64,id:base64`; the first encrypts."""
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for item in (x.strip() for x in text.split(",") if x.strip()):
            key_id, sep, b64 = item.partition(":")
            if not sep or not key_id:
                raise CodecKeyError(f"COLLECTION_CODEC_KEYS: {key_id or item!r} needs id:base64")
            try:
                key = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                raise CodecKeyError(
                    f"COLLECTION_CODEC_KEYS: key {key_id!r} is not base64"
                ) from None
            if len(key) != 32:
                raise CodecKeyError(f"COLLECTION_CODEC_KEYS: key {key_id!r} must be 32 bytes")
            if key_id in keys:
                raise CodecKeyError(f"COLLECTION_CODEC_KEYS: key id {key_id!r} is listed twice")
            keys[key_id] = key
            order.append(key_id)
        if not order:
            raise CodecKeyError("COLLECTION_CODEC_KEYS: no key")
        return cls(order[0], keys)

    @staticmethod
    def generate(key_id: str) -> str:
        return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self._ciphers = {k: AESGCM(v) for k, v in keys.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.keys.current
        nonce = os.urandom(NONCE)
        # The key id is authenticated too: a payload cannot be relabelled to another key.
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was turned on: readable as it is
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecKeyError(
                f"payload encrypted with key {key_id!r}, which is not in COLLECTION_CODEC_KEYS"
            )
        try:
            plain = cipher.decrypt(payload.data[:NONCE], payload.data[NONCE:], key_id.encode())
        except InvalidTag:
            raise CodecKeyError(f"payload under key {key_id!r} fails authentication") from None
        return Payload.FromString(plain)


def data_converter(keys_text: str | None) -> DataConverter:
    """The project's converter, with encryption when keys are configured."""
    if not keys_text:
        return DATA_CONVERTER
    return dataclasses.replace(DATA_CONVERTER, payload_codec=EncryptionCodec(Keys.parse(keys_text)))
